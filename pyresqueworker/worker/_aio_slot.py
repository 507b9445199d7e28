"""One job slot in asyncio mode: one Resque worker id, worked by a task on the process's loop.

The loop is the thread slot's (:mod:`pyresqueworker.worker._slot`):
claim (finishing the previous job
in the same call) → run → repeat, with the idle wait in :mod:`pyresqueworker.worker._aio_doorbell`.
Claims go through the process's :class:`~pyresqueworker.worker._claim_batch.ClaimBatcher`; the rare
paths (a claim whose reply was lost, a large payload, a retry, a give-back) run the existing
sync code in the runtime's small Redis thread pool. To the rest of the process (housekeeping,
signals, shutdown) an :class:`AioSlot` looks like a thread slot: ``worker_id``, ``job``,
``status``, ``is_alive``, ``abandon``, ``interrupt_if_overdue``.
"""

from __future__ import annotations

import time
from typing import Optional, Union

from ..protocol import wire
from ..protocol._outage import Outage, gives_up_when_stopping
from ._aio_doorbell import Ring
from ._aio_perform import perform
from ._claim import NO_FINISH, PAUSED, Claimed, Claimer, Finish, HeldLarge
from ._host import AioRuntimeHost
from ._job_outcome import JobTracking, interrupt_thread, report, retry_or_fail
from ._retrying import Retrier

__all__ = ["AioSlot"]

_Claim = Optional[Union[Claimed, HeldLarge, str]]


class AioSlot(JobTracking):
    """A Resque worker id whose jobs run as one task at a time on the runtime's loop."""

    child: Optional[int] = None  # no forked children in asyncio mode (for USR1 and shutdown)

    def __init__(self, runtime: AioRuntimeHost, index: int, worker_id: str) -> None:
        self.runtime = runtime
        self.process = runtime.process
        self.index = index
        self.worker_id = worker_id
        process = self.process
        self.claimer = Claimer(runtime.sync_client, process.keys, worker_id)
        self.retrier = Retrier(runtime.sync_client, process.keys, process.registry, worker_id)
        self._init_tracking()
        self.status = "waiting"  # or "paused" (pause-all-workers), for the process title
        self.finish: Finish = NO_FINISH  # the last job's completion, sent with the next claim
        self.held: Optional[tuple[str, str]] = None  # a large claimed item still to check
        self.drained = False  # ended because --interval 0 found every queue empty
        self.ended = False
        # A sync job running in a pool thread, for the timeout watchdog.
        self.thread_ident: Optional[int] = None
        self.deadline: Optional[float] = None
        self.timeout = 0.0

    # -- what the process sees ------------------------------------------------------------

    def is_alive(self) -> bool:
        return not self.ended

    def join(self, timeout: Optional[float] = None) -> None:
        """Nothing to join per slot: :meth:`AsyncRuntime.join` ends every task at once."""


    def interrupt_if_overdue(self, now: float) -> None:
        """Watchdog for a sync job in a pool thread (async jobs are cancelled by a timer)."""
        if self.deadline is None:  # unlocked fast path: housekeeping calls this for every slot
            return
        with self.lock:
            if self.deadline is None or now < self.deadline or self.thread_ident is None:
                return
            self.deadline = None
            interrupt_thread(self.thread_ident, self.timeout)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and run jobs until the process stops; Redis faults and bugs back off and
        retry (as :meth:`Slot.run`), a pending completion is kept until Redis takes it."""
        process = self.process
        outage = Outage(f"slot-{self.index}", book=process.outages,
                        on_recovered=process.metrics.reconnected)
        try:
            with process.tracing.worker_calls():  # this task's context: tasks it starts too
                while True:
                    try:
                        if not await self._turn():
                            return
                        outage.succeeded()
                    except Exception as exc:
                        owes = self.finish != NO_FINISH
                        if gives_up_when_stopping(process.stopping.is_set(), owes,
                                                  process.stop_deadline, outage.down_for):
                            return
                        await outage.apause(exc, process.stopping.is_set)
        finally:
            self.ended = True

    async def _turn(self) -> bool:
        process, doorbell = self.process, self.runtime.doorbell
        if process.stopping.is_set() or process.paused.is_set():
            await self._flush()
            if process.stopping.is_set():
                return False
            await self.runtime.while_paused()
            return True
        if process.connections.holding():  # a Sentinel failover: write nothing until it's done
            await self.runtime.while_holding()
            return True
        queues = self.runtime.queue_order()
        claimed: _Claim = None
        if queues or self.held:
            claimed = await self._claim(queues)
        else:  # a glob that matches no queue yet
            await self._flush()
        process.note_global_pause(claimed == PAUSED)
        got_job = isinstance(claimed, Claimed)
        if self.ring is not None:  # the watcher that woke this slot waits for the answer
            self.ring.answer(got_job)
        woken, self.ring, self.woken = self.woken, None, False
        if not got_job:
            if claimed is None and process.config.drain:
                await self._flush()
                self.drained = True
                return False
            self.status = "paused" if claimed == PAUSED else "waiting"
            self.woken, self.ring = await doorbell.sleep(queues)
            return True
        if woken:
            doorbell.fan_out()
        assert isinstance(claimed, Claimed)
        outcome = await self._execute_safely(claimed)
        if outcome is None:  # abandoned at shutdown: the process has dealt with the job
            return False
        self.finish = outcome
        return True

    ring: Optional[Ring] = None  # the doorbell ring that woke this slot, to answer
    woken = False  # the last sleep ended with a wake-up (a burst may be on)

    async def _claim(self, queues: list[str]) -> _Claim:
        """Finish the previous job and claim the next. A large item that a claim left for
        this slot is taken first (the completion then waits for the next call); if taking it
        fails, the next turn resumes it."""
        runtime = self.runtime
        if self.held is not None:
            queue, held_at = self.held
            # resuming: the failed attempt may have moved the item already
            claimed: _Claim = await runtime.in_redis_thread(self.claimer.take_held, queue,
                                                            held_at, True)
            self.held = None
            return claimed
        run_at = wire.run_at()
        claimed = await self._send(queues, run_at)
        if isinstance(claimed, HeldLarge):
            self.held = (claimed.queue, run_at)  # kept until checked, even across a fault
            claimed = await runtime.in_redis_thread(self.claimer.take_held, claimed.queue,
                                                    run_at)
            self.held = None
        return claimed

    async def _send(self, queues: list[str], run_at: str) -> _Claim:
        """One claim call with the pending completion (cleared once Redis took it)."""
        if self.claimer.needs_resolving:  # a lost reply: the sync claim resolves it first
            claimed: _Claim = await self.runtime.in_redis_thread(
                self.claimer.claim, queues, self.finish, run_at)
        else:
            claimed = await self.runtime.batcher.claim(self.claimer, queues, self.finish,
                                                       run_at)
        self.finish = NO_FINISH
        return claimed

    async def _flush(self) -> None:
        """Send a pending completion on its own (before sleeping, pausing or stopping)."""
        if self.finish == NO_FINISH:
            return
        claimed = await self._send([], "")
        if isinstance(claimed, Claimed):  # a lost claim's job: this slot won't run it now
            await self.runtime.in_redis_thread(self.claimer.requeue, claimed.queue, claimed.raw)

    # -- one job --------------------------------------------------------------------------

    async def _execute_safely(self, claimed: Claimed) -> Optional[Finish]:
        """:meth:`_execute`; an error of our own bookkeeping fails the job, never drops it."""
        try:
            return await self._execute(claimed)
        except Exception as exc:
            return self._internal_error(claimed, exc)

    async def _execute(self, claimed: Claimed) -> Optional[Finish]:
        job = self._start_job(claimed)
        process = self.process
        started = time.perf_counter()
        span = process.tracing.start(job)
        with span:  # attached in this task's context only
            result = await perform(self, job)
        span.end(result, False)
        duration_ms = (time.perf_counter() - started) * 1000.0
        if not self._job_ran():
            return None
        finish, outcome = result.finish, result.outcome
        if result.retryable and finish.mode == "2":
            settled = await self.runtime.in_redis_thread(
                retry_or_fail, self.retrier, self.worker_id, job, finish)
            finish, outcome = (NO_FINISH, "retried") if settled is None else (settled, outcome)
        report(process, self.worker_id, job, outcome, duration_ms, result.error)
        self._job_done()
        return finish
