"""One worker process: its slots, registration and shutdown (signals: :mod:`.signals`).

Startup follows Ruby's order (spec §7.2): title ``resque: Starting``, signal handlers, clear
and write the heartbeat, prune dead workers, register. The housekeeping thread
(:mod:`pyresqueworker.worker._housekeeping`) then keeps heartbeats, prunes and titles going.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, Callable, Optional, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..client.history import HistoryBuffer, HistorySettings
from ..jobs.observers import JobObserver
from ..jobs.registry import Registry
from ..jobs.tracing import JobTracing
from ..log import logger
from ..protocol import wire
from ..protocol._outage import OutageBook
from ..protocol._probe import probe_clients
from ..protocol.connection import ConnectionFactory, describe, redact_url
from ..protocol.queues import QueueOrder
from ._aio_runtime import AsyncRuntime, choose_execution
from ._doorbell import WATCH_TIMEOUT, Doorbell
from ._housekeeping import Housekeeper, set_proctitle
from ._observe import job_observers
from ._prune import Pruner
from ._registration import ProcessNotes, publish_concurrency_caps, register_workers
from ._shutdown import (
    begin_stop,
    give_back_running_jobs,
    retry_while_stopping,
    unregister,
    write_history,
)
from ._signals import SignalHandling
from ._slot import Slot
from ._slot_view import SlotView
from ._start_checks import warn_at_start
from ._startup import WorkerError, first_connection, retry_start_up, start_up_unless_stopped
from ._supervisor import RECYCLE_EXIT
from .config import WorkerConfig
from .metrics import NULL_METRICS, Metrics
from .periodic import PeriodicEnqueuer
from .scheduler import start_scheduler_thread

T = TypeVar("T")

__all__ = ["WorkerError", "WorkerProcess"]



class WorkerProcess(SignalHandling):
    """Runs ``config.concurrency`` slots in this process until told to stop."""

    def __init__(self, config: WorkerConfig, registry: Registry,
                 metrics: Optional[Metrics] = None, *, start_warnings: bool = False) -> None:
        self.config = config
        # Whether this process says the start-up warnings: the one run_worker runs itself,
        # never a supervisor's child (the parent says them once, not at every fork).
        self.start_warnings = start_warnings
        self.registry = registry
        self.metrics = metrics or NULL_METRICS
        self.tracing = JobTracing(config.tracing, config.trace_worker_redis)
        self.keys = wire.Keys(config.namespace)
        self.hostname = config.hostname or socket.gethostname()
        self.pid = os.getpid()
        self.stopping = threading.Event()  # no new claims
        self.paused = threading.Event()  # USR2
        self.notes = ProcessNotes(config)  # what the process says once
        self.wake = threading.Event()  # wakes idle loops early (never set while running)
        self.stop_now = False
        self.stop_deadline = float("inf")  # when running jobs are given up on
        self.jobs_done = 0
        self.recycling = False  # exiting for --max-jobs / --max-memory, to be replaced
        self.signal_count = 0
        self._signals: list[tuple[int, bool]] = []  # (signal, immediate) not yet acted on
        self.connections = ConnectionFactory(config.redis_url, tls=config.tls)
        # One book so an outage is logged once per process, not per loop; one prober for all.
        self.outages = OutageBook(probe=probe_clients(self.connections))
        self.conn = first_connection(self.new_connection(), self.starting, config.namespace)
        spec = config.queues
        self.worker_ids = [
            str(wire.WorkerId.build(self.hostname, self.pid, spec.id_queues, slot=i))
            for i in range(config.concurrency)
        ]
        self.execution = choose_execution(config, registry)  # "threads" or "asyncio"
        self.reply_spin = config.reply_spin_for(self.execution)
        self.runtime: Optional[AsyncRuntime] = None
        self.slots: list[SlotView] = []
        self.queues = QueueOrder(spec)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_lock = threading.Lock()
        self._scheduler_thread: Optional[threading.Thread] = None
        # Built here, so a bad cron declaration stops the start with one line.
        self.periodic: Optional[PeriodicEnqueuer] = (
            PeriodicEnqueuer(self.conn, self.keys, registry, grace=config.periodic_grace,
                             lock_value=self.worker_ids[0]) if config.periodic else None)
        self.history: Optional[HistoryBuffer] = (
            HistoryBuffer(self.keys, HistorySettings(config.history, config.history_max))
            if config.history is not None else None)
        # Who hears of each job: our metrics, history and log line, then the user's observers.
        self.observers: JobObserver = job_observers(self.metrics, self.history,
                                                    registry.observers)
        self.housekeeper = Housekeeper(self)
        self.doorbell = Doorbell(self.keys, self._watch_connection, self.stopping, self.outages)
        self.pruner = Pruner(
            self.conn, self.keys, self.worker_ids[0], spec.id_queues, self.hostname,
            config.prune_after, max(1, int(config.heartbeat_interval)), config.on_dead_worker,
            config.max_recoveries, set(self.worker_ids),
        )

    # -- helpers used by slots --------------------------------------------------------------

    def starting(self, step: Callable[[], T], what: str) -> T:
        """A start-up step, retried while Redis is away (see :func:`retry_start_up`); a stop
        signal ends the wait."""
        return retry_start_up(step, what, redact_url(self.connections.url),
                              self.config.connect_timeout, lambda: self.signal_count > 0,
                              self.config.tls)

    def new_connection(self) -> redis.Redis:
        """A single-socket client from the process's one :class:`ConnectionFactory`; it
        connects on first use and follows Redis through failovers and redirects."""
        # A slot blocks up to --interval in BLMOVE; redis-py 8's default 5 s socket timeout
        # would cut longer waits and drop the connection each time.
        # One immediate retry (a connection the server closed while idle); no more: the loops
        # retry with their own backoff and log the outage, where redis-py's ten retries would
        # hide a dead link behind up to ten socket timeouts.
        return self.connections.connect(single_connection_client=True,
                                        socket_timeout=self.config.interval + 5.0,
                                        socket_connect_timeout=5.0,
                                        retry=Retry(NoBackoff(), 1))

    def _watch_connection(self) -> redis.Redis:
        """A queue watcher's connection: it blocks longer than a slot's, and its timeout
        must not cut the wait. Only just longer, and no retry: a reply lost in a black hole
        is noticed a second after it was due, and the watcher then waits for the process's
        prober, not for a blind retry's timeout (see protocol._probe)."""
        return self.connections.connect(single_connection_client=True,
                                        socket_timeout=WATCH_TIMEOUT + 1.0,
                                        socket_connect_timeout=5.0,
                                        retry=Retry(NoBackoff(), 0))

    def holding(self) -> bool:
        """A Sentinel failover holds writes (see :meth:`Locator.hold`)."""
        return self.connections.holding()

    def wait_timeout(self) -> float:
        """How long a paused slot, or a ``--fetch blpop`` wait, waits before looking again."""
        return self.config.interval or 1.0

    def run_async(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on this process's event-loop thread (started on first use)."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="asyncio", daemon=True).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def job_finished(self, slot: SlotView) -> None:
        self.jobs_done += 1  # under the GIL; an off-by-one across slots does not matter here
        if self.config.max_jobs is not None and self.jobs_done >= self.config.max_jobs:
            self.recycle(f"processed {self.jobs_done} jobs (--max-jobs)")

    def note_unknown_class(self, class_name: str) -> None:
        self.notes.unknown_class(class_name)

    def note_global_pause(self, paused: bool) -> None:
        self.notes.global_pause(paused)

    def recycle(self, reason: str) -> None:
        """Stop claiming, finish running jobs, and exit so the supervisor starts a fresh one."""
        if not self.recycling:
            self.recycling = True
            logger.info("recycling worker process", extra={"reason": reason})
            self.stopping.set()
            self.wake.set()

    # -- life -----------------------------------------------------------------------------

    def run(self) -> int:
        """Start, work until stopped, shut down cleanly. Returns the exit code."""
        with self.tracing.worker_calls():
            return self._run()

    def _run(self) -> int:
        set_proctitle("resque: Starting")
        self._install_signals()
        start_up_unless_stopped(self._start_up, lambda: self.signal_count > 0,
                                redact_url(self.connections.url))
        watch = self.connections.failover_watch()
        if watch is not None:
            watch.start()
        logger.info("worker started", extra={
            "workers": self.worker_ids[0] + (f" (+{len(self.worker_ids) - 1} slots)"
                                             if len(self.worker_ids) > 1 else ""),
            "queues": str(self.config.queues), "redis": describe(self.conn),
            "fetch": self.config.fetch, "execution": self.execution})
        if self.execution == "asyncio":
            self.runtime = AsyncRuntime(self)
            self.slots = list(self.runtime.slots)
            self.runtime.start()
        else:
            threads = [Slot(self, i, wid) for i, wid in enumerate(self.worker_ids)]
            self.slots = list(threads)
            for thread in threads:
                thread.start()
        self.housekeeper.update_title()
        if self.config.scheduler:
            self._scheduler_thread = start_scheduler_thread(
                self.connections.connect(), self.config.namespace, self.stopping)
        housekeeping = threading.Thread(target=self.tracing.quietly(self.housekeeper.run),
                                        name="housekeeping", daemon=True)
        housekeeping.start()
        while not self.stopping.is_set():
            self.handle_signals()
            self._replace_dead_slots()
            time.sleep(0.05)
        try:
            self._shutdown()
        finally:
            if watch is not None:
                watch.stop()
        return RECYCLE_EXIT if self.recycling else 0

    def _start_up(self) -> None:
        self.starting(lambda: self.housekeeper.heartbeat(first=True), "write heartbeats")
        self.starting(self.housekeeper.prune, "prune dead workers")
        self.starting(lambda: self.register(self.worker_ids), "register the worker")
        self.starting(lambda: publish_concurrency_caps(self.conn, self.keys, self.registry),
                      "publish concurrency caps")
        if self.queues.stale:  # globs: expanded before the first claim (then by housekeeping)
            self.starting(lambda: self.queues.refresh(self.conn.smembers(self.keys.queues)),
                          "read the queue list")
        if self.start_warnings:  # after the steps that may fail: a failed start is one line
            warn_at_start(self.config, self.registry, self.conn)

    def _replace_dead_slots(self) -> None:
        """A slot thread never ends while the process runs; if one did (a bug), its worker id
        gets a fresh thread, so no id stays registered with nobody behind it."""
        if self.runtime is not None:  # the runtime restarts its own tasks and sees the drain
            return
        for index, slot in enumerate(self.slots):
            if slot.is_alive() or self.stopping.is_set():
                continue
            if self.config.drain and slot.drained:
                if not any(s.is_alive() for s in self.slots):
                    self.stopping.set()
                continue
            logger.error("slot thread ended unexpectedly; starting a new one",
                         extra={"worker": slot.worker_id})
            replacement = Slot(self, index, slot.worker_id)
            self.slots[index] = replacement
            replacement.start()

    # -- registration, heartbeat, prune -------------------------------------------------------

    def register(self, worker_ids: list[str]) -> None:
        """Write the worker ids to Redis again (after Redis lost them)."""
        register_workers(self.conn, self.keys, worker_ids)

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.stopping.set()
        self.wake.set()
        grace = 0 if self.stop_now else self.config.shutdown_timeout
        self.stop_deadline = time.monotonic() + grace
        while time.monotonic() < self.stop_deadline and not self.stop_now:
            self.handle_signals()
            if not any(s.is_alive() for s in self.slots):
                break
            time.sleep(0.05)
        self.handle_signals()  # log the signal that cut the wait short
        begin_stop()
        abandoned: list[SlotView] = []
        try:
            abandoned = retry_while_stopping(lambda: give_back_running_jobs(self))
        finally:
            for slot in self.slots:
                if slot not in abandoned:  # an abandoned slot is still inside job code
                    slot.join(timeout=1.0)
            if self.runtime is not None:  # cancels the abandoned jobs' tasks, ends the loop
                self.runtime.join(timeout=2.0)
            retry_while_stopping(lambda: unregister(self))
            write_history(self)
            if self._scheduler_thread is not None:
                self._scheduler_thread.join(timeout=2.0)  # it releases the master lock
        logger.info("worker stopped", extra={"workers": self.worker_ids[0]})
