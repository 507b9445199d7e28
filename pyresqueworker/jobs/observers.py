"""What a worker reports about each job it runs, to whoever listens: one interface for all.

A :class:`JobObserver` hears that a job started and how it ended. The worker's own metrics, job
history and per-job log line are observers like any a user registers with
:meth:`~pyresqueworker.Registry.observe` (or :func:`pyresqueworker.observe`); thread and asyncio
slots call them alike. Observers run in the slot that ran the job, after the job, so they must be
quick and must not raise: an observer's error is logged and the others still hear the job.

Middleware (:meth:`~pyresqueworker.Registry.middleware`) wraps a job and may change what it does;
an observer only hears about it, and never changes its outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple, Optional

from ..protocol.job import Job

__all__ = ["OUTCOMES", "JobObserver", "JobOutcome", "Observers"]

_log = logging.getLogger("pyresqueworker.worker")

# How a job can end, as logs, metrics and history name it:
#   success   the handler returned
#   skipped   a before_perform hook raised DontPerform, or middleware did not call call_next
#   failure   it raised, could not be decoded, named an unknown class, or its forked child
#             died under it: a failure entry
#   timeout   it ran past its timeout: a failure entry
#   retried   it failed and its retry policy scheduled another attempt: no failure entry
OUTCOMES = ("success", "skipped", "failure", "timeout", "retried")


class JobOutcome(NamedTuple):
    """How one run of a job ended.

    ``outcome`` is one of :data:`OUTCOMES`; ``duration_s`` the seconds it ran; ``error`` is
    ``"ExceptionName: message"`` for a job that raised, else None.
    """

    outcome: str
    duration_s: float
    error: Optional[str] = None


class JobObserver:
    """Subclass and override what you need; the base class ignores everything."""

    def job_started(self, job: Job) -> None:
        """A slot began running ``job`` (``job.worker_id`` names the slot)."""

    def job_finished(self, job: Job, outcome: JobOutcome) -> None:
        """``job`` ended as ``outcome`` says (its completion is on its way to Redis)."""


class Observers(JobObserver):
    """Several observers heard as one, in order; one's error never reaches the job or the
    others (it is logged)."""

    def __init__(self, observers: Sequence[JobObserver]) -> None:
        self.observers = tuple(observers)
        # Those that hear of a start at all (most only count finished jobs): asked per job.
        self._starters = tuple(o for o in self.observers
                               if type(o).job_started is not JobObserver.job_started)

    def job_started(self, job: Job) -> None:
        for observer in self._starters:
            try:
                observer.job_started(job)
            except Exception:
                _log.exception("observer %r failed on job_started", observer)

    def job_finished(self, job: Job, outcome: JobOutcome) -> None:
        for observer in self.observers:
            try:
                observer.job_finished(job, outcome)
            except Exception:
                _log.exception("observer %r failed on job_finished", observer)
