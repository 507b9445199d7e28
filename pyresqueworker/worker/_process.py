"""One worker process: its slots, registration and shutdown (signals: :mod:`.signals`).

Startup follows Ruby's order (spec §7.2): title ``resque: Starting``, signal handlers, clear
and write the heartbeat, prune dead workers, register. The housekeeping thread
(:mod:`pyresqueworker.worker._housekeeping`) then keeps heartbeats, prunes and titles going.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, Callable, Optional, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..client.history import HistoryBuffer, HistorySettings
from ..jobs.registry import Registry
from ..jobs.tracing import JobTracing
from ..log import capped, logger
from ..protocol import wire
from ..protocol._outage import OutageBook
from ..protocol._probe import probe_clients
from ..protocol.connection import ConnectionFactory, describe, redact_url
from ._aio_runtime import AsyncRuntime, choose_execution
from ._doorbell import WATCH_TIMEOUT, Doorbell
from ._housekeeping import Housekeeper, set_proctitle
from ._prune import Pruner
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
from ._start_checks import handler_hint, warn_at_start
from ._startup import WorkerError, is_cluster_node, retry_start_up
from ._supervisor import RECYCLE_EXIT
from .config import WorkerConfig
from .metrics import NULL_METRICS, Metrics
from .periodic import PeriodicEnqueuer

T = TypeVar("T")

__all__ = ["WorkerError", "WorkerProcess"]

_QUEUE_REFRESH = 1.0  # seconds a dynamic (glob) queue list is cached


def _reply_spin(config: WorkerConfig, execution: str) -> float:
    """How long the slot polls for its claim's reply: only a thread slot alone in its
    process (polling slots would fight over the GIL), and only while the box has a core
    more than there are worker processes (so polling never takes a local Redis's core)."""
    lone = execution == "threads" and config.concurrency == 1
    return config.reply_spin if lone and config.processes < (os.cpu_count() or 1) else 0.0


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
        self.globally_paused = False  # the last claim found pause-all-workers on
        self._pause_lock = threading.Lock()
        self._unknown_classes: set[str] = set()  # logged once each
        self.wake = threading.Event()  # wakes idle loops early (never set while running)
        self.stop_now = False
        self.stop_deadline = float("inf")  # when running jobs are given up on
        self.jobs_done = 0
        self.recycling = False  # exiting for --max-jobs / --max-memory, to be replaced
        self.signal_count = 0
        self._signals: list[tuple[int, bool]] = []  # (signal, immediate) not yet acted on
        self.rng = random.Random()
        self.connections = ConnectionFactory(config.redis_url, tls=config.tls)
        # One book so an outage is logged once per process, not per loop; one prober for all.
        self.outages = OutageBook(probe=probe_clients(self.connections))
        self.conn = self._first_connection()
        spec = config.queues
        self.worker_ids = [
            str(wire.WorkerId.build(self.hostname, self.pid, spec.id_queues, slot=i))
            for i in range(config.concurrency)
        ]
        self.execution = choose_execution(config, registry)  # "threads" or "asyncio"
        self.reply_spin = _reply_spin(config, self.execution)
        self.runtime: Optional[AsyncRuntime] = None
        self.slots: list[SlotView] = []
        self._expanded: list[tuple[str, int]] = spec.expand()
        self._expanded_at = 0.0
        self._is_dynamic = spec.dynamic
        # Strict static queues have one order for ever: build it once, not per job.
        self._fixed_order: Optional[list[str]] = (
            None if spec.dynamic or spec.weighted else [q for q, _ in self._expanded])
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
        self.housekeeper = Housekeeper(self)
        self.doorbell = Doorbell(self.keys, self._watch_connection, self.stopping, self.outages)
        self.pruner = Pruner(
            self.conn, self.keys, self.worker_ids[0], spec.id_queues, self.hostname,
            config.prune_after, max(1, int(config.heartbeat_interval)), config.on_dead_worker,
            config.max_recoveries, set(self.worker_ids),
        )

    # -- helpers used by slots --------------------------------------------------------------

    def _first_connection(self) -> redis.Redis:
        conn = self.new_connection()
        self.starting(conn.ping, "connect")
        if self.starting(lambda: is_cluster_node(conn), "check the server") and (
                not wire.has_hash_tag(self.config.namespace)):
            raise WorkerError(
                f"Redis at {describe(conn)} is a Redis Cluster: the namespace "
                f"{self.config.namespace!r} needs a hash tag (e.g. '{{resque}}:') so every "
                "key of a job lives in one slot")
        return conn

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

    def queue_order(self, conn: redis.Redis) -> list[str]:
        """The queues to try for one fetch (weighted shuffle, dynamic expansion)."""
        if self._fixed_order is not None:
            return self._fixed_order
        spec = self.config.queues
        if self._is_dynamic and time.monotonic() - self._expanded_at > _QUEUE_REFRESH:
            known = [m.decode("utf-8", "replace") if isinstance(m, bytes) else m
                     for m in conn.smembers(self.keys.queues)]
            self._expanded = spec.expand(known)
            self._expanded_at = time.monotonic()
        return spec.order(self._expanded, spec.weighted, self.rng)

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
        """Say once per class why its jobs fail (the failure keeps Ruby's exact text)."""
        if class_name not in self._unknown_classes:
            self._unknown_classes.add(class_name)
            # repr and capped: the name comes from a payload, and must not forge log lines.
            shown = capped(repr(class_name))
            hint = handler_hint(self.config, "its handler")
            logger.warning(f"no Python handler is registered for class {shown}: its jobs fail "
                           f"with NameError ({hint})",
                           extra={"class": class_name, "apps": ",".join(self.config.apps) or None})

    def note_global_pause(self, paused: bool) -> None:
        """Log once when a claim first finds ``pause-all-workers`` on, and once when off."""
        if paused != self.globally_paused:
            with self._pause_lock:
                if paused == self.globally_paused:
                    return
                self.globally_paused = paused
            if paused:
                logger.warning("paused by pause-all-workers: no job is taken until it is lifted"
                               " (pyresque unpause)")
            else:
                logger.info("pause-all-workers lifted: taking jobs again")

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
        self.starting(lambda: self.housekeeper.heartbeat(first=True), "write heartbeats")
        self.starting(self.housekeeper.prune, "prune dead workers")
        self.starting(lambda: self.register(self.worker_ids), "register the worker")
        self.starting(self._publish_concurrency_caps, "publish concurrency caps")
        if self.start_warnings:  # after the steps that may fail: a failed start is one line
            warn_at_start(self.config, self.registry, self.conn)
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
            self._start_scheduler()
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

    def _start_scheduler(self) -> None:
        from ..client._client import Client
        from .scheduler import Scheduler

        client = Client(redis=self.connections.connect(), namespace=self.config.namespace)
        scheduler = Scheduler(client)
        self._scheduler_thread = threading.Thread(
            target=scheduler.run, args=(self.stopping,), name="scheduler", daemon=True)
        self._scheduler_thread.start()

    # -- registration, heartbeat, prune -------------------------------------------------------

    def register(self, worker_ids: list[str]) -> None:
        started = wire.started_at()
        with self.conn.pipeline(transaction=False) as pipe:
            for wid in worker_ids:
                pipe.sadd(self.keys.workers, wid)
                pipe.set(self.keys.worker_started(wid), started)
            pipe.execute()

    def _publish_concurrency_caps(self) -> None:
        """Tell every worker's claim script this registry's ``max_concurrency`` caps.

        A class registered here without a cap has any old cap removed, so the caps follow
        the code that is deployed.
        """
        capped = [h for h in self.registry.handlers() if h.max_concurrency is not None]
        uncapped = [h.class_name for h in self.registry.handlers()
                    if h.max_concurrency is None]
        with self.conn.pipeline(transaction=True) as pipe:
            for handler in capped:
                pipe.hset(self.keys.concurrency_caps, handler.class_name,
                          str(handler.max_concurrency))
            if uncapped:
                pipe.hdel(self.keys.concurrency_caps, *uncapped)
            pipe.execute()

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
