"""One job slot as an asyncio task: the asyncio driver of the slot cycle (:mod:`._cycle`).

The cycle decides what the slot does; this module does it, awaiting: claims go through the
process's :class:`~pyresqueworker.worker._claim_batch.ClaimBatcher` (many slots' claims in one
write); the rare paths (a claim whose reply was lost, a large payload, a retry, a give-back)
run the sync code in the runtime's small Redis thread pool; the idle wait is
:mod:`pyresqueworker.worker._aio_doorbell`'s. To the rest of the process (housekeeping,
signals, shutdown) an :class:`AioSlot` looks like a thread slot: ``worker_id``, ``job``,
``status``, ``is_alive``, ``abandon``, ``interrupt_if_overdue``.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable, Optional, Protocol, TypeVar, Union

import redis

from ..protocol import wire
from ._aio_doorbell import AioDoorbell, Ring
from ._aio_perform import perform
from ._claim import Claimer
from ._claim_batch import ClaimBatcher
from ._claim_values import JobResult
from ._cycle import (
    Backoff,
    Claim,
    CycleSettings,
    Perform,
    Report,
    Requeue,
    SettleRetry,
    Sleep,
    SlotCycle,
    Step,
    WaitHold,
    WaitPaused,
)
from ._held import Claimed, HeldLarge
from ._hosts import SlotHost
from ._job_outcome import interrupt_thread
from ._retrying import Retrier
from ._tracking import JobTracking

__all__ = ["AioRuntimeHost", "AioSlot"]

T = TypeVar("T")

_Claim = Optional[Union[Claimed, HeldLarge, str]]


class AioRuntimeHost(Protocol):
    """What the asyncio runtime shares with its slots."""

    @property
    def process(self) -> SlotHost: ...

    loop: asyncio.AbstractEventLoop
    batcher: ClaimBatcher
    doorbell: AioDoorbell
    sync_client: redis.Redis  # for the rare sync paths, run in the Redis thread pool

    async def while_paused(self) -> None:
        """Wait while the process is paused and not stopping."""

    async def while_holding(self) -> None:
        """Wait while a Sentinel failover holds writes (and the process is not stopping)."""

    async def in_redis_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run sync Redis code in the Redis thread pool."""

    async def in_job_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a sync job in the job thread pool."""


class AioSlot(JobTracking):
    """A Resque worker id whose jobs run as one task at a time on the runtime's loop."""

    child: Optional[int] = None  # no forked children in asyncio mode (for USR1 and shutdown)

    def __init__(self, runtime: AioRuntimeHost, index: int, worker_id: str) -> None:
        self.runtime = runtime
        self.process = process = runtime.process
        self.index = index
        self.worker_id = worker_id
        self.claimer = Claimer(runtime.sync_client, process.keys, worker_id)
        self.retrier = Retrier(runtime.sync_client, process.keys, process.registry, worker_id)
        self._init_tracking()
        self.cycle = SlotCycle(process, CycleSettings.of(process.config, process.keys.ns),
                               self, f"slot-{index}")
        self.status = "waiting"  # or "paused" (pause-all-workers), for the process title
        self.held: Optional[tuple[str, str]] = None  # a large claimed item still to check
        self.ended = False
        self.ring: Optional[Ring] = None  # the doorbell ring that woke this slot, to answer
        self.woken = False  # the last sleep ended with a wake-up (a burst may be on)
        # A sync job running in a pool thread, for the timeout watchdog.
        self.thread_ident: Optional[int] = None
        self.deadline: Optional[float] = None
        self.timeout = 0.0

    # -- what the process sees ------------------------------------------------------------

    @property
    def drained(self) -> bool:
        """Ended because ``--interval 0`` found every queue empty."""
        return self.cycle.drained

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

    # -- the driver -----------------------------------------------------------------------

    async def run(self) -> None:
        """Do the cycle's steps until it ends (the process stops, or a drain is done)."""
        cycle = self.cycle.run()
        try:
            with self.process.tracing.worker_calls():  # this task's context: tasks it starts too
                step: Step = next(cycle)
                while True:
                    try:
                        answer = await getattr(self, step.driver_method)(step)
                    except Exception as exc:
                        step = cycle.throw(exc)
                    else:
                        step = cycle.send(answer)
        except StopIteration:
            pass
        finally:
            self.ended = True

    # -- the steps ------------------------------------------------------------------------

    async def _claim(self, step: Claim) -> _Claim:
        """Send the completion and claim. A large item a claim left for this slot is taken
        first: its claim call carried this step's completion already (the take failed, and
        the cycle asks again)."""
        runtime = self.runtime
        if self.held is not None:
            queue, held_at = self.held
            # resuming: the failed attempt may have moved the item already
            claimed: _Claim = await runtime.in_redis_thread(self.claimer.take_held, queue,
                                                            held_at, True)
            self.held = None
        else:
            run_at = wire.run_at() if step.queues else ""
            if self.claimer.needs_resolving:  # a lost reply: the sync claim resolves it first
                claimed = await runtime.in_redis_thread(self.claimer.claim, step.queues,
                                                        step.finish, run_at)
            else:
                claimed = await runtime.batcher.claim(self.claimer, step.queues, step.finish,
                                                      run_at)
            if isinstance(claimed, HeldLarge):
                self.held = (claimed.queue, run_at)  # kept until checked, even across a fault
                claimed = await runtime.in_redis_thread(self.claimer.take_held, claimed.queue,
                                                        run_at)
                self.held = None
        if step.queues:
            got_job = isinstance(claimed, Claimed)
            self._answer_ring(got_job)
            if got_job and self.woken:
                runtime.doorbell.fan_out()
            self.woken = False
        return claimed

    def _answer_ring(self, got_job: bool) -> None:
        if self.ring is not None:  # the watcher that woke this slot waits for the answer
            self.ring.answer(got_job)
            self.ring = None

    async def _requeue(self, step: Requeue) -> None:
        await self.runtime.in_redis_thread(self.claimer.requeue, step.claimed.queue,
                                           step.claimed.raw)

    async def _sleep(self, step: Sleep) -> None:
        self._answer_ring(False)
        self.woken = False
        self.status = "paused" if step.paused else "waiting"
        self.woken, self.ring = await self.runtime.doorbell.sleep(step.queues)

    async def _wait_paused(self, _step: WaitPaused) -> None:
        await self.runtime.while_paused()

    async def _wait_hold(self, _step: WaitHold) -> None:
        await self.runtime.while_holding()

    async def _perform(self, step: Perform) -> JobResult:
        with step.span:  # attached in this task's context only
            return await perform(self, step.job)

    async def _settle_retry(self, step: SettleRetry) -> Any:
        return await self.runtime.in_redis_thread(
            partial(self.retrier.settle, step.job, step.failure, token=step.token))

    async def _report(self, step: Report) -> None:
        self.process.observers.job_finished(step.job, step.outcome)

    async def _back_off(self, step: Backoff) -> None:
        await step.outage.apause(step.error, self.process.stopping.is_set)
