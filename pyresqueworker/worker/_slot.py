"""One job slot: one Resque worker id, one Redis connection, one thread.

The loop is: claim (finishing the previous job in the same call) → run → repeat. When every
queue is empty it sleeps until a queue watcher rings (see :mod:`pyresqueworker.worker._doorbell`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any, Optional

from ..log import logger
from ..protocol import wire
from ..protocol._outage import Outage, gives_up_when_stopping
from ..protocol.job import Job, JobCall
from ._claim import NO_FINISH, PAUSED, Claimed, Claimer, Finish
from ._doorbell import Ring
from ._host import WorkerHost
from ._job_outcome import (
    JobTracking,
    failed,
    failure_for,
    interrupt_thread,
    report,
    retry_or_fail,
    succeeded,
)
from ._retrying import Retrier
from .isolation import JobResult, JobTimeout, run_forked

__all__ = ["Slot"]

SAFETY_POLL = 60.0  # seconds a sleeping slot waits for a ring before claiming anyway


class Slot(JobTracking, threading.Thread):
    """A thread that works jobs as one Resque worker."""

    def __init__(self, process: WorkerHost, index: int, worker_id: str) -> None:
        super().__init__(name=f"slot-{index}", daemon=True)
        self.process = process
        self.index = index
        self.worker_id = worker_id
        self.conn = process.new_connection()  # connects on first use, in this thread
        self.claimer = Claimer(self.conn, process.keys, worker_id, process.reply_spin)
        self.retrier = Retrier(self.conn, process.keys, process.registry, worker_id)
        self._init_tracking()
        self.deadline: Optional[float] = None  # monotonic time a sync job must end by
        self.timeout = 0.0  # the running job's timeout, for messages
        self.child: Optional[int] = None  # pid of the job's child with --fork-per-job
        self.status = "waiting"  # or "paused" (pause-all-workers), for the process title
        self.ring: Optional[Ring] = None  # the doorbell ring that woke this slot, to answer
        self.finish: Finish = NO_FINISH  # the last job's completion, sent with the next claim
        self.drained = False  # ended because --interval 0 found every queue empty

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Claim and run jobs until the process stops. Nothing ends this loop early: Redis
        being away (refused, cut, OOM, READONLY, a failover...) and any other error are
        logged once, backed off from with jitter, and retried; a pending completion is kept
        until Redis takes it."""
        try:
            with self.process.tracing.worker_calls():
                self._loop()
        finally:
            self.claimer.caller.run_after_send()  # the last job's report, if still pending
            if self.ring is not None:  # its watcher must not wait for an answer that won't come
                self.ring.answer(False)

    def _loop(self) -> None:
        process = self.process
        outage = Outage(self.name, book=process.outages,
                        on_recovered=process.metrics.reconnected)
        while True:
            try:
                if not self._turn():
                    return
                outage.succeeded()
            except Exception as exc:
                self.claimer.caller.run_after_send()  # (no request went out: report now)
                if gives_up_when_stopping(process.stopping.is_set(), self.finish != NO_FINISH,
                                          process.stop_deadline, outage.down_for):
                    return
                # Until Redis answers a probe (a lost link), else the backoff; not wake.wait:
                # once stopping, wake stays set.
                outage.pause(exc, process.stopping.is_set)

    def _turn(self) -> bool:
        """One claim and what follows it (a job, or an idle wait); False to end the loop."""
        process = self.process
        if process.stopping.is_set() or process.paused.is_set():
            self.finish = self._flush(self.finish)
            if process.stopping.is_set():
                return False
            process.wake.wait(0.2)
            return True
        if process.connections.holding():  # a Sentinel failover: write nothing until it's done
            self.claimer.caller.run_after_send()  # (the last job's report need not wait)
            process.wake.wait(0.05)
            return True
        queues = process.queue_order(self.conn)
        claimed: Claimed | str | None
        if process.config.fetch == "blpop":
            self.finish = self._flush(self.finish)
            claimed = self._blpop(queues)
        elif queues:
            claimed = self.claimer.claim(queues, self.finish, wire.run_at())
            self.finish = NO_FINISH
        else:  # a glob that matches no queue yet
            self.finish, claimed = self._flush(self.finish), None
        process.note_global_pause(claimed == PAUSED)
        if self.ring is not None:  # the watcher that woke this slot waits for the answer
            self.ring.answer(isinstance(claimed, Claimed))
            self.ring = None
        if claimed is None or claimed == PAUSED:
            if claimed is None and process.config.drain:
                self.finish = self._flush(self.finish)
                self.drained = True
                return False
            self._idle_wait(queues, paused=claimed == PAUSED)
            return True
        assert isinstance(claimed, Claimed)
        outcome = self._execute_safely(claimed)
        if outcome is None:  # abandoned at shutdown: the process has dealt with the job
            return False
        self.finish = outcome
        return True

    def _execute_safely(self, claimed: Claimed) -> Optional[Finish]:
        """:meth:`_execute`; an error of our own bookkeeping fails the job, never drops it
        (it was claimed into this slot's worker key, which the next claim overwrites)."""
        try:
            return self._execute(claimed)
        except Exception as exc:
            return self._internal_error(claimed, exc)

    def _flush(self, finish: Finish) -> Finish:
        """Send a pending completion on its own (before waiting, pausing or stopping); the
        last job's report, which otherwise rides on the next claim's request, goes first."""
        self.claimer.caller.run_after_send()
        if finish != NO_FINISH:
            claimed = self.claimer.claim((), finish, "")
            if isinstance(claimed, Claimed):  # a lost claim's job: this slot won't run it now
                self.claimer.requeue(claimed.queue, claimed.raw)
        return NO_FINISH

    def _blpop(self, queues: list[str]) -> Claimed | None:
        if not queues:
            return None
        popped = self.claimer.blpop(queues, self.process.wait_timeout())
        if popped is None:
            return None
        return self.claimer.adopt(popped[0], popped[1], NO_FINISH, wire.run_at())

    def _idle_wait(self, queues: list[str], paused: bool) -> None:
        process = self.process
        self.status = "paused" if paused else "waiting"
        if paused or not queues or process.config.fetch == "blpop":
            process.wake.wait(process.wait_timeout())
            return
        # Asleep until a queue watcher rings (see _doorbell.py); the poll is a safety net, or
        # --interval when some queues of a large glob are not watched.
        poll = process.config.interval if process.doorbell.unwatched else SAFETY_POLL
        self.ring = process.doorbell.sleep(queues, poll or SAFETY_POLL)

    # -- one job --------------------------------------------------------------------------

    def _execute(self, claimed: Claimed) -> Optional[Finish]:
        job = self._start_job(claimed)
        process = self.process
        forked = process.config.fork_per_job
        started = time.perf_counter()
        span = process.tracing.start(job)
        if forked:
            result = run_forked(
                lambda: span.in_child(self._perform, job), self._timeout_for(job),
                lambda name, message: failure_for(job, None, name, message), self._track_child,
            )
        else:
            with span:
                result = self._perform(job)
        span.end(result, forked)
        duration_ms = (time.perf_counter() - started) * 1000.0
        if not self._job_ran():
            return None
        finish, outcome = result.finish, result.outcome
        if result.retryable and finish.mode == "2":
            settled = retry_or_fail(self.retrier, self.worker_id, job, finish)
            finish, outcome = (NO_FINISH, "retried") if settled is None else (settled, outcome)
        # Reported while the next claim's reply is on its way (the log line, history and
        # metrics then cost the slot no time of its own): run once that request is sent.
        self.claimer.caller.defer(partial(self._report, job, outcome, duration_ms,
                                          result.error))
        self._job_done()
        return finish

    def _report(self, job: Job, outcome: str, duration_ms: float, error: Optional[str]) -> None:
        try:
            report(self.process, self.worker_id, job, outcome, duration_ms, error)
        except Exception:  # (never into the claim it rides on)
            logger.exception("could not report a finished job")

    def _perform(self, job: Job) -> JobResult:
        """Decode, dispatch and run one job; every error becomes a failure entry."""
        registry = self.process.registry
        call: Optional[JobCall] = None
        try:
            try:
                call = registry.decode(job)
                timeout = self._timeout_for(job, call.class_name)
                if timeout is not None and not self.process.config.fork_per_job:
                    self.timeout, self.deadline = timeout, time.monotonic() + timeout
                performed = registry.perform(job, call, run_async=self._run_async)
            finally:
                with self.lock:  # from here on the watchdog leaves this thread alone
                    self.deadline = None
        except BaseException as exc:  # Ruby's ``rescue Object``: SystemExit included
            return failed(self.process, self.retrier, job, call, exc)
        return succeeded(self.retrier, job, call, performed)

    def _timeout_for(self, job: Job, class_name: Optional[str] = None) -> Optional[float]:
        handler = self.process.registry.find(class_name if class_name is not None
                                             else job.class_name)
        return (handler.timeout if handler is not None else None) or self.process.config.job_timeout

    def _run_async(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Async handlers get their timeout from asyncio, which cancels them cleanly."""
        deadline = self.deadline
        if deadline is None:
            return self.process.run_async(coro)
        with self.lock:
            self.deadline = None  # cancellation, not the watchdog, enforces it
        limit = max(0.0, deadline - time.monotonic())
        try:
            return self.process.run_async(asyncio.wait_for(coro, limit))
        except asyncio.TimeoutError:
            raise JobTimeout(f"job exceeded its timeout of {self.timeout:g}s") from None

    def _track_child(self, pid: Optional[int]) -> None:
        self.child = pid

    def interrupt_if_overdue(self, now: float) -> None:
        """Watchdog (thread mode): raise JobTimeout inside a sync job that ran too long.

        Soft: the exception arrives at the job's next Python bytecode, so a job blocked in
        one long C call (a socket read without a timeout) sees it only when that returns.
        """
        with self.lock:
            if self.deadline is None or now < self.deadline or self.ident is None:
                return
            self.deadline = None
            interrupt_thread(self.ident, self.timeout)

