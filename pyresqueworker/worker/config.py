"""Everything a worker run can be told, in one dataclass (the CLI only fills it in)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from ..jobs.tracing import MODES as TRACING_MODES
from ..protocol.connection import TLSFiles
from ..protocol.queues import QueueSpec
from ..protocol.urls import resolve_namespace

__all__ = ["MAX_ASYNC_SLOTS", "MAX_CONNECTIONS", "MAX_THREAD_SLOTS", "WorkerConfig"]

MAX_THREAD_SLOTS = 1000  # --concurrency in thread mode: one thread (and connection) per slot
MAX_ASYNC_SLOTS = 20000  # --concurrency in asyncio mode: one task per slot
MAX_CONNECTIONS = 56  # --connections: claim connections; a process opens at most 7 more


@dataclass
class WorkerConfig:
    """Settings for :func:`pyresqueworker.run_worker`.

    Times are seconds. Defaults follow Resque where Resque has one (heartbeat 60 s, prune
    after 300 s) and goworker/Sidekiq where it does not (shutdown timeout 25 s).
    """

    queues: QueueSpec
    redis_url: Optional[str] = None
    connect_timeout: float = 30.0  # seconds start-up keeps retrying an unreachable Redis
    tls: Optional[TLSFiles] = None
    # Not given: PYRESQUE_NAMESPACE, else "resque:" (as Client() and the command lines read it).
    namespace: str = field(default_factory=resolve_namespace)
    concurrency: int = 1
    processes: int = 1
    # "threads": a thread per slot; "asyncio": every slot a task on one event loop (sync
    # handlers in a thread pool); "auto": asyncio when every registered handler is async def.
    execution: str = "auto"
    # asyncio mode: connections the slots' claims share (None: 2 to 8 by concurrency).
    connections: Optional[int] = None
    # Longest an idle slot blocks before re-checking every queue; with several queues the wait
    # is capped at 0.1 s so the queues it is not watching are still picked up quickly.
    interval: float = 1.0
    # Longest a slot alone in its process polls for its claim's reply before sleeping on it
    # (spares a Redis on the same host the wake-up; 0: never poll). See protocol._spin.
    reply_spin: float = 0.0002
    exit_on_complete: bool = False
    shutdown_timeout: float = 25.0
    heartbeat_interval: float = 60.0
    prune_after: float = 300.0
    fetch: str = "claim"  # "claim" (atomic, default) or "blpop" (at-most-once)
    # What happens to a job still running at the shutdown deadline, or held by a dead worker.
    on_shutdown_timeout: str = "requeue"  # or "fail" (Resque::DirtyExit)
    on_dead_worker: str = "requeue"  # or "fail" (Resque::PruneDeadWorkerDirtyExit)
    max_recoveries: int = 3
    job_timeout: Optional[float] = None  # default for handlers without their own timeout=
    # Seconds a tracked job's result is kept, instead of what its enqueue asked (--result-ttl).
    result_ttl: Optional[int] = None
    fork_per_job: bool = False  # Resque's isolation: each job in a forked child
    # OpenTelemetry consumer spans per job (see pyresqueworker.jobs.tracing): "child" of the
    # payload's traceparent, "link"ed to it from a new trace, or "off".
    tracing: str = "child"
    trace_worker_redis: bool = False  # let Redis instrumentation trace claims and completions
    max_jobs: Optional[int] = None  # recycle a worker process after this many jobs
    max_memory_mb: Optional[float] = None  # ... or once its resident memory passes this
    scheduler: bool = False  # also move due delayed jobs (resque-scheduler's master election)
    periodic: bool = True  # fire cron schedules (code-declared and runtime ones)
    periodic_grace: float = 60.0  # seconds a cron firing may be late and still be enqueued
    history: Optional[float] = None  # record finished jobs, kept this many seconds
    history_max: int = 100_000  # ... and at most this many records
    time_series: bool = True  # sample counters and queues once a minute for the charts
    metrics_port: Optional[int] = None  # serve Prometheus metrics on this port
    metrics_host: str = "127.0.0.1"
    apps: list[str] = field(default_factory=list)
    # The command line that started the worker ("pyresque-work"), or None when run_worker is
    # called from Python: a missing handler is then explained in its terms (--app, or an
    # import), since a hint about a flag means nothing to code that has none.
    command: Optional[str] = None
    hostname: Optional[str] = None

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency < 1:
            problems.append("--concurrency must be at least 1")
        if self.result_ttl is not None and self.result_ttl < 1:
            problems.append("--result-ttl must be at least 1 second")
        if self.execution not in ("auto", "threads", "asyncio"):
            problems.append("--execution must be 'auto', 'threads' or 'asyncio'")
        elif self.concurrency > MAX_ASYNC_SLOTS:
            problems.append(f"--concurrency must be at most {MAX_ASYNC_SLOTS}")
        elif self.concurrency > MAX_THREAD_SLOTS and self.execution == "threads":
            problems.append(f"--concurrency above {MAX_THREAD_SLOTS} needs --execution asyncio "
                            "(threads mode runs one thread and one connection per slot)")
        if self.execution == "asyncio" and self.fork_per_job:
            problems.append("--fork-per-job cannot be combined with --execution asyncio (a "
                            "forked child per job is thread mode's isolation)")
        if self.execution == "asyncio" and self.fetch != "claim":
            problems.append("--fetch blpop cannot be combined with --execution asyncio")
        if self.connections is not None and not 1 <= self.connections <= MAX_CONNECTIONS:
            problems.append(f"--connections must be between 1 and {MAX_CONNECTIONS}")
        if self.processes < 1:
            problems.append("--processes must be at least 1")
        if self.connect_timeout < 0:
            problems.append("--connect-timeout must not be negative")
        if self.interval < 0:
            problems.append("--interval must not be negative")
        if not 0 <= self.reply_spin <= 0.01:
            problems.append("--reply-spin-us must be between 0 and 10000")
        if self.shutdown_timeout < 0:
            problems.append("--shutdown-timeout must not be negative")
        if self.heartbeat_interval <= 0:
            problems.append("--heartbeat-interval must be positive")
        if self.prune_after <= self.heartbeat_interval:
            problems.append("--prune-after must be longer than --heartbeat-interval")
        if self.fetch not in ("claim", "blpop"):
            problems.append("--fetch must be 'claim' or 'blpop'")
        for name in ("on_shutdown_timeout", "on_dead_worker"):
            if getattr(self, name) not in ("requeue", "fail"):
                problems.append(f"--{name.replace('_', '-')} must be 'requeue' or 'fail'")
        if self.max_recoveries < 1:
            problems.append("--max-recoveries must be at least 1")
        if self.job_timeout is not None and self.job_timeout <= 0:
            problems.append("--job-timeout must be positive")
        if self.tracing not in TRACING_MODES:
            problems.append("--tracing must be 'child', 'link' or 'off'")
        if self.max_jobs is not None and self.max_jobs < 1:
            problems.append("--max-jobs must be at least 1")
        if self.max_memory_mb is not None and self.max_memory_mb <= 0:
            problems.append("--max-memory must be positive")
        if not self.periodic_grace >= 1:
            problems.append("--periodic-grace must be at least 1 second")
        if self.history is not None and not self.history > 0:
            problems.append("--history must be a positive duration")
        if self.history_max < 1:
            problems.append("--history-max must be at least 1")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            problems.append("--metrics-port must be between 1 and 65535")
        if not self.metrics_host:
            problems.append("--metrics-host must not be empty")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def recycles(self) -> bool:
        """Whether worker processes may exit to be replaced (so a supervisor is needed)."""
        return self.max_jobs is not None or self.max_memory_mb is not None

    @property
    def drain(self) -> bool:
        """Resque's ``interval == 0`` and ``--exit-on-complete``: stop when queues are empty."""
        return self.exit_on_complete or self.interval == 0

    def reply_spin_for(self, execution: str) -> float:
        """How long a slot polls for its claim's reply: only a thread slot alone in its
        process (polling slots would fight over the GIL), and only while the box has a core
        more than there are worker processes (so polling never takes a local Redis's core)."""
        lone = execution == "threads" and self.concurrency == 1
        return self.reply_spin if lone and self.processes < (os.cpu_count() or 1) else 0.0
