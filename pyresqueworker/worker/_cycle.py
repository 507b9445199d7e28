"""The slot cycle: one Resque worker id's life — claim, run, finish, report — written once.

:meth:`SlotCycle.run` is a generator with no I/O of its own. It decides what a slot does next
and yields it as a *step*; the slot's driver does the step and sends back its answer, or throws
in the error it met. Two drivers run it: a thread (:class:`~pyresqueworker.worker._slot.Slot`)
and an asyncio task (:class:`~pyresqueworker.worker._aio_slot.AioSlot`). How a driver does a
step is its own business (a thread blocks; a task awaits, and batches its claims); what the
slot does, and in which order, is decided here only.

One turn::

    stopping or paused ─→ Claim([], finish): the pending completion alone ─→ WaitPaused
                          (stopping: the end)
    a failover holds writes ─→ WaitHold
    Claim(queues, finish)  — the previous job's completion rides on the next claim
        ├─ nothing (or PAUSED) ─→ Sleep     (--interval 0: the completion alone, end)
        └─ a job ─→ Perform ─→ [SettleRetry] ─→ Report ─→ (its completion waits for
                                                          the next Claim)
    any error from a step ─→ Backoff (until Redis answers), then the next turn

``--fetch blpop`` claims with :class:`Pop` instead (the completion is sent first).
Each step's class says what the driver must do and what it answers.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Optional

from ..jobs.observers import JobOutcome
from ..log import logger
from ..protocol._outage import Outage, gives_up_when_stopping, is_redis_away
from ..protocol.job import Job
from ..protocol.workflow import TRACK_FIELD
from ._claim_values import NO_FINISH, PAUSED, Finish, JobResult
from ._held import Claimed
from ._hosts import CycleHost
from ._retrying import new_token
from ._steps import (
    Backoff,
    Claim,
    Perform,
    Pop,
    Report,
    Requeue,
    SettleRetry,
    Sleep,
    Step,
    WaitHold,
    WaitPaused,
)
from ._tracked import tracked_finish
from ._tracking import JobTracking
from .config import WorkerConfig

__all__ = [
    "Backoff", "Claim", "CycleSettings", "Perform", "Pop", "Report", "Requeue",
    "SettleRetry", "Sleep", "SlotCycle", "Step", "WaitHold", "WaitPaused",
    "settle_retry",
]


Cycle = Generator[Step, Any, None]

_WAIT_PAUSED, _WAIT_HOLD = WaitPaused(), WaitHold()


@dataclass(frozen=True)
class CycleSettings:
    """The flags that change the cycle's course (from :class:`~.config.WorkerConfig`)."""

    blpop: bool = False  # --fetch blpop
    drain: bool = False  # --interval 0: end once every queue is empty
    forked: bool = False  # --fork-per-job (the span ends in the parent)
    namespace: str = "resque:"  # (a tracked job's end is written under it)
    result_ttl: Optional[int] = None  # --result-ttl

    @classmethod
    def of(cls, config: WorkerConfig, namespace: str) -> CycleSettings:
        """The settings ``config`` asks for (asyncio mode refuses blpop and forks)."""
        return cls(blpop=config.fetch == "blpop", drain=config.drain,
                   forked=config.fork_per_job, namespace=namespace, result_ttl=config.result_ttl)


class SlotCycle:
    """The decisions of one slot; ``tracking`` is its driver's view of the running job."""

    def __init__(self, host: CycleHost, settings: CycleSettings, tracking: JobTracking,
                 name: str) -> None:
        self.host, self.settings, self.tracking = host, settings, tracking
        self.outage = Outage(name, book=host.outages, on_recovered=host.metrics.reconnected)
        # Its own streak: a retry waits out Redis while the slot's claims have not failed.
        self.retry_outage = Outage(f"retry in {name}", book=host.outages,
                                   on_recovered=host.metrics.reconnected)
        self.finish: Finish = NO_FINISH  # the last job's completion, sent with the next claim
        self.drained = False  # ended because --interval 0 found every queue empty

    def run(self) -> Cycle:
        """Turns until the process stops. Nothing ends it early: an error from a step (Redis
        away, a bug) is backed off from and the turn tried again; a pending completion is
        kept until Redis takes it, or the stop's patience is over."""
        host, outage = self.host, self.outage
        while True:
            try:
                if not (yield from self._turn()):
                    return
                outage.succeeded()
            except Exception as exc:
                if gives_up_when_stopping(host.stopping.is_set(), self.finish != NO_FINISH,
                                          host.stop_deadline, outage.down_for):
                    return
                yield Backoff(outage, exc)

    def _turn(self) -> Generator[Step, Any, bool]:
        """One claim and what follows it (a job, or an idle wait); False to end."""
        host = self.host
        if host.stopping.is_set() or host.paused.is_set():
            yield from self._send_finish()
            if host.stopping.is_set():
                return False
            yield _WAIT_PAUSED
            return True
        if host.holding():
            yield _WAIT_HOLD
            return True
        queues = host.queues.next()
        claimed: Claimed | str | None
        if self.settings.blpop:
            yield from self._send_finish()
            claimed = (yield Pop(queues)) if queues else None
        elif queues:
            claimed = yield Claim(queues, self.finish)
            self.finish = NO_FINISH
        else:  # a glob that matches no queue yet
            yield from self._send_finish()
            claimed = None
        host.note_global_pause(claimed == PAUSED)
        if not isinstance(claimed, Claimed):
            if claimed is None and self.settings.drain:
                yield from self._send_finish()
                self.drained = True
                return False
            yield Sleep(queues, paused=claimed == PAUSED)
            return True
        finish = yield from self._job(claimed)
        if finish is None:  # abandoned at shutdown: the process has dealt with the job
            return False
        self.finish = finish
        return True

    def _send_finish(self) -> Generator[Step, Any, None]:
        """Send a pending completion on its own (before waiting, pausing or stopping)."""
        if self.finish == NO_FINISH:
            return
        claimed = yield Claim([], self.finish)
        self.finish = NO_FINISH
        if isinstance(claimed, Claimed):  # a lost claim's job: this slot won't run it now
            yield Requeue(claimed)

    def _job(self, claimed: Claimed) -> Generator[Step, Any, Optional[Finish]]:
        """Run one claimed job; its completion, or None if the shutdown abandoned it. An
        error of our own bookkeeping fails the job, never drops it: it is in this slot's
        worker key, which the next claim overwrites."""
        tracking, host = self.tracking, self.host
        try:
            job = tracking.begin(claimed)
            host.observers.job_started(job)
            started = time.perf_counter()
            span = host.tracing.start(job)
            result: JobResult = yield Perform(job, span)
            span.end(result, self.settings.forked)
            duration = time.perf_counter() - started
            if not tracking.returned():
                return None
            finish, outcome = result.finish, result.outcome
            if result.retryable and finish.mode == "2":
                settled = yield from settle_retry(host, self.retry_outage, job, finish)
                finish, outcome = (NO_FINISH, "retried") if settled is None else (settled, outcome)
            if TRACK_FIELD in (job.payload or ()):  # (results, dependencies, batches)
                finish = tracked_finish(self.settings.namespace, job, result, finish, outcome,
                                        self.settings.result_ttl)
            yield Report(job, JobOutcome(outcome, duration, result.error))
            tracking.end()
            host.job_finished(tracking)
            return finish
        except Exception as exc:
            return tracking.internal_error(claimed, exc)


def settle_retry(host: CycleHost, outage: Outage, job: Job, failure: Finish
                 ) -> Generator[Step, Any, Optional[Finish]]:
    """Schedule a retry if the job's policy allows (None: nothing to finish), waiting out a
    Redis outage (on ``outage``) and a failover hold (a retry written to a master being
    demoted would be lost with it). The job stays in its slot's worker key meanwhile, so
    waiting loses nothing, where failing it because Redis blinked would spend the retries its
    policy allows. A stopping slot whose Redis stays away past its patience fails the job as
    it is: the entry keeps it."""
    step = SettleRetry(job, failure, new_token())  # one token for every send
    while True:
        if host.holding() and not host.stopping.is_set():
            yield _WAIT_HOLD
            continue
        try:
            settled: Optional[Finish] = yield step
        except Exception as exc:
            if not is_redis_away(exc):
                raise
            if gives_up_when_stopping(host.stopping.is_set(), True, host.stop_deadline,
                                      outage.down_for):
                logger.warning("could not schedule a retry, failing the job", extra={
                    "worker": job.worker_id, "class": job.class_name, "error": str(exc)})
                return failure
            yield Backoff(outage, exc)
            continue
        outage.succeeded()
        return settled
