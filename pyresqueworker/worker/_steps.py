"""The steps of the slot cycle (:mod:`._cycle`): what a driver must do, and what it answers.

The cycle yields one of these at a time; its thread driver (:mod:`._slot`) or asyncio driver
(:mod:`._aio_slot`) does it and sends the answer back, or throws in the error it met. Each
step names the driver method that does it (``driver_method``): both drivers dispatch on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

from ..jobs.observers import JobOutcome
from ..jobs.tracing import JobSpan
from ..protocol._outage import Outage
from ..protocol.job import Job
from ._claim_values import Finish
from ._held import Claimed

__all__ = [
    "Backoff", "Claim", "Perform", "Pop", "Report", "Requeue", "SettleRetry", "Sleep", "Step",
    "WaitHold", "WaitPaused",
]

# (Plain dataclasses: a frozen one costs twice as much to make, and a slot makes three a job.)

@dataclass
class Claim:
    """Send ``finish`` (the previous job's completion) and take the first job of ``queues``.
    Answers a :class:`Claimed`, :data:`PAUSED` (``pause-all-workers``) or None (nothing).
    With no queues it only sends ``finish``; a claimed job then is one a lost reply had
    taken (:class:`Requeue` it)."""

    driver_method: ClassVar[str] = "_claim"

    queues: list[str]
    finish: Finish


@dataclass
class Pop:
    """``--fetch blpop``: block on ``queues`` for a while; answers a :class:`Claimed` or None."""

    driver_method: ClassVar[str] = "_pop"

    queues: list[str]


@dataclass
class Requeue:
    """Put ``claimed`` back at the front of its queue: this slot will not run it now."""

    driver_method: ClassVar[str] = "_requeue"

    claimed: Claimed


@dataclass
class Sleep:
    """Nothing to do: wait until a queue watcher rings (or ``pause-all-workers`` ends)."""

    driver_method: ClassVar[str] = "_sleep"

    queues: list[str]
    paused: bool


@dataclass
class WaitPaused:
    """The process is paused (USR2): wait a moment before looking again."""

    driver_method: ClassVar[str] = "_wait_paused"


@dataclass
class WaitHold:
    """A Sentinel failover holds writes: wait a moment before looking again."""

    driver_method: ClassVar[str] = "_wait_hold"


@dataclass
class Perform:
    """Run ``job`` inside ``span``; answers its :class:`~.isolation.JobResult`."""

    driver_method: ClassVar[str] = "_perform"

    job: Job
    span: JobSpan


@dataclass
class SettleRetry:
    """``job`` failed with ``failure``: schedule a retry if its policy allows
    (:meth:`~._retrying.Retrier.settle` with ``token``: sent again after a lost reply, it
    counts the attempt once). Answers None if a retry was scheduled (nothing to finish), else
    the completion to send."""

    driver_method: ClassVar[str] = "_settle_retry"

    job: Job
    failure: Finish
    token: str


@dataclass
class Report:
    """Tell the observers how ``job`` ended. A driver may do it once the next claim's request
    is sent (it then costs the slot no time of its own), never later than the next step."""

    driver_method: ClassVar[str] = "_report"

    job: Job
    outcome: JobOutcome


@dataclass
class Backoff:
    """A step failed with ``error`` (Redis away, or a bug): wait as ``outage`` says."""

    driver_method: ClassVar[str] = "_back_off"

    outage: Outage
    error: Exception


Step = Union[Claim, Pop, Requeue, Sleep, WaitPaused, WaitHold, Perform, SettleRetry, Report,
             Backoff]
