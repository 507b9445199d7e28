"""What a claim call carries and answers, and how a job ended: for everyone who only needs
the values.

:class:`Finish` is a finished job's completion, which rides on the slot's next claim;
:data:`PAUSED` is the answer while ``pause-all-workers`` is set; :class:`ClaimCall` is one
prepared call; :class:`JobResult` is a run's answer (its completion among it). The claim
itself is :mod:`pyresqueworker.worker._claim`'s; what a slot holds
(:class:`~pyresqueworker.worker._held.Claimed`) is :mod:`pyresqueworker.worker._held`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ..protocol._resp import ScriptRun

__all__ = ["NO_FINISH", "PAUSED", "SUCCESS", "ClaimCall", "Finish", "JobResult"]


class Finish(NamedTuple):
    """A finished job's completion, folded into the slot's next claim call.

    ``mode``: "0" nothing to finish, "1" success, "2" failure (entry pushed, failed stats
    bumped), "3" dirty exit (entry pushed, no stats: Ruby's unregister path bumps neither).
    ``cleanup`` names a key deleted in the same step (a retry counter once a job is done with
    retrying).
    """

    mode: str
    entry: str = ""
    cleanup: str = ""
    # Commands sent ahead of the call that carries this completion, in its write: a tracked
    # job's end (see pyresqueworker.protocol.workflow). Safe to send twice.
    ahead: tuple[ScriptRun, ...] = ()


NO_FINISH = Finish("0")
SUCCESS = Finish("1")

PAUSED = "paused"  # a claim's answer while pause-all-workers is set


@dataclass(frozen=True)
class ClaimCall:
    """One prepared claim call: the script's KEYS and ARGV (see ``Claimer.prepare``)."""

    keys: list[str]
    args: list[Any]
    queues: tuple[str, ...]
    ahead: tuple[ScriptRun, ...] = ()  # the completion's (see Finish.ahead)


@dataclass(frozen=True)
class JobResult:
    """How a job ended: the completion to send, ``outcome`` for the log, the error text."""

    finish: Finish
    outcome: str
    error: Optional[str] = None
    # False when the failure must not be retried (a fatal exception, an undecodable payload).
    retryable: bool = True
    # What the handler returned, as JSON: only for a tracked job that keeps its result.
    value: Optional[str] = None
