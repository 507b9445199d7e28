"""One job slot as a thread: the thread driver of the slot cycle (:mod:`._cycle`).

The cycle decides what the slot does; this module does it, blocking: claims over the slot's own
connection, runs the job in this thread (or a forked child), and sleeps on the doorbell
(:mod:`._doorbell`) while every queue is empty.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any, Optional, Protocol

import redis

from ..protocol import wire
from ..protocol._outage import STOP_PATIENCE
from ..protocol.job import Job, JobCall
from ._claim import Claimer
from ._claim_values import NO_FINISH, JobResult
from ._cycle import (
    Backoff,
    Claim,
    CycleSettings,
    Perform,
    Pop,
    Report,
    Requeue,
    SettleRetry,
    Sleep,
    SlotCycle,
    Step,
    WaitHold,
    WaitPaused,
)
from ._doorbell import Doorbell, Ring
from ._held import Claimed
from ._hosts import SlotHost
from ._job_outcome import failed, failure_for, interrupt_thread, succeeded
from ._retrying import Retrier
from ._tracking import JobTracking
from .isolation import JobTimeout, run_forked

__all__ = ["Slot", "ThreadSlotHost"]

SAFETY_POLL = 60.0  # seconds a sleeping slot waits for a ring before claiming anyway
_PAUSED_LOOK, _HOLD_LOOK = 0.2, 0.05  # seconds between looks while paused / while held


class ThreadSlotHost(SlotHost, Protocol):
    """What a thread slot uses of its worker process, beyond what every slot does."""

    doorbell: Doorbell
    wake: threading.Event  # wakes idle waits early
    reply_spin: float  # seconds a slot polls for its claim's reply (0: it sleeps)

    def new_connection(self) -> redis.Redis:
        """A single-socket client that follows Redis through failovers."""

    def wait_timeout(self) -> float:
        """How long a paused or blocked slot waits before looking again."""

    def run_async(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the process's event-loop thread."""


class Slot(JobTracking, threading.Thread):
    """A thread that works jobs as one Resque worker."""

    def __init__(self, process: ThreadSlotHost, index: int, worker_id: str) -> None:
        super().__init__(name=f"slot-{index}", daemon=True)
        self.process = process
        self.index = index
        self.worker_id = worker_id
        self.conn = process.new_connection()  # connects on first use, in this thread
        self.claimer = Claimer(self.conn, process.keys, worker_id, process.reply_spin,
                               give_up=self._stops_waiting)
        self.retrier = Retrier(self.conn, process.keys, process.registry, worker_id)
        self._init_tracking()
        self.cycle = SlotCycle(process, CycleSettings.of(process.config, process.keys.ns),
                               self, self.name)
        self.deadline: Optional[float] = None  # monotonic time a sync job must end by
        self.timeout = 0.0  # the running job's timeout, for messages
        self.child: Optional[int] = None  # pid of the job's child with --fork-per-job
        self.status = "waiting"  # or "paused" (pause-all-workers), for the process title
        self.ring: Optional[Ring] = None  # the doorbell ring that woke this slot, to answer

    def _stops_waiting(self, waited: float) -> bool:
        """A stopping worker waits for a claim's reply STOP_PATIENCE seconds at most: a claimed
        job whose reply is lost stays in the worker key, where recovery finds it."""
        return waited >= STOP_PATIENCE and self.process.stopping.is_set()

    @property
    def drained(self) -> bool:
        """Ended because ``--interval 0`` found every queue empty."""
        return self.cycle.drained

    # -- the driver -----------------------------------------------------------------------

    def run(self) -> None:
        """Do the cycle's steps until it ends (the process stops, or a drain is done)."""
        try:
            with self.process.tracing.worker_calls():
                self._drive()
        finally:
            self.claimer.caller.run_after_send()  # the last job's report, if still pending
            self._answer_ring(False)  # its watcher must not wait for an answer that won't come

    def _drive(self) -> None:
        cycle, caller = self.cycle.run(), self.claimer.caller
        try:
            step: Step = next(cycle)
            while True:
                if caller.after_send is not None and (type(step) is not Claim
                                                      or not step.queues):
                    caller.run_after_send()  # a deferred report never waits past a step
                try:
                    answer = getattr(self, step.driver_method)(step)
                except Exception as exc:
                    step = cycle.throw(exc)
                else:
                    step = cycle.send(answer)
        except StopIteration:
            return

    def _answer_ring(self, got_job: bool) -> None:
        if self.ring is not None:  # the watcher that woke this slot waits for the answer
            self.ring.answer(got_job)
            self.ring = None

    # -- the steps ------------------------------------------------------------------------

    def _claim(self, step: Claim) -> Claimed | str | None:
        claimed = self.claimer.claim(step.queues, step.finish, wire.run_at())
        if self.ring is not None and step.queues:
            self._answer_ring(isinstance(claimed, Claimed))
        return claimed

    def _pop(self, step: Pop) -> Optional[Claimed]:
        popped = self.claimer.blpop(step.queues, self.process.wait_timeout())
        claimed = None if popped is None else self.claimer.adopt(
            popped[0], popped[1], NO_FINISH, wire.run_at())  # (sent before)
        self._answer_ring(claimed is not None)
        return claimed

    def _requeue(self, step: Requeue) -> None:
        self.claimer.requeue(step.claimed.queue, step.claimed.raw)

    def _sleep(self, step: Sleep) -> None:
        process = self.process
        self._answer_ring(False)
        self.status = "paused" if step.paused else "waiting"
        if step.paused or not step.queues or process.config.fetch == "blpop":
            process.wake.wait(process.wait_timeout())
            return
        # Asleep until a queue watcher rings (see _doorbell.py); the poll is a safety net, or
        # --interval when some queues of a large glob are not watched.
        poll = process.config.interval if process.doorbell.unwatched else SAFETY_POLL
        self.ring = process.doorbell.sleep(step.queues, poll or SAFETY_POLL)

    def _wait_paused(self, _step: WaitPaused) -> None:
        self.process.wake.wait(_PAUSED_LOOK)  # (not until set: once stopping, wake stays set)

    def _wait_hold(self, _step: WaitHold) -> None:
        self.process.wake.wait(_HOLD_LOOK)

    def _settle_retry(self, step: SettleRetry) -> Any:
        return self.retrier.settle(step.job, step.failure, token=step.token)

    def _report(self, step: Report) -> None:
        # Told once the next claim's request is sent: the log line, history and metrics then
        # cost the slot no time of its own (the reply is on its way meanwhile).
        self.claimer.caller.defer(partial(self.process.observers.job_finished, step.job,
                                          step.outcome))

    def _back_off(self, step: Backoff) -> None:
        # Until Redis answers a probe (a lost link), else the backoff.
        step.outage.pause(step.error, self.process.stopping.is_set)

    # -- one job --------------------------------------------------------------------------

    def _perform(self, step: Perform) -> JobResult:
        job, span = step.job, step.span
        if self.process.config.fork_per_job:
            return run_forked(
                lambda: span.in_child(self._run_job, job), self._timeout_for(job),
                lambda name, message: failure_for(job, None, name, message), self._track_child)
        with span:
            return self._run_job(job)

    def _run_job(self, job: Job) -> JobResult:
        """Decode, dispatch and run one job; every error becomes a failure entry."""
        process = self.process
        call: Optional[JobCall] = None
        try:
            try:
                call = process.registry.decode(job)
                timeout = self._timeout_for(job, call.class_name)
                if timeout is not None and not process.config.fork_per_job:
                    self.timeout, self.deadline = timeout, time.monotonic() + timeout
                performed, value = process.registry.perform_call(job, call,
                                                                 run_async=self._run_async)
            finally:
                with self.lock:  # from here on the watchdog leaves this thread alone
                    self.deadline = None
        except BaseException as exc:  # Ruby's ``rescue Object``: SystemExit included
            return failed(process.note_unknown_class, self.retrier, job, call, exc)
        return succeeded(self.retrier, job, call, performed, value)

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
