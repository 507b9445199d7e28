"""The worker's own job observers — metrics, history, the per-job log line — and the one list
every slot reports to (:func:`job_observers`), with the user's observers after them.

Each is a :class:`~pyresqueworker.jobs.observers.JobObserver`, as a user's is: a slot does not
know who listens.
"""

from __future__ import annotations

import logging
from typing import Optional

from ..client.history import HistoryBuffer
from ..jobs.observers import JobObserver, JobOutcome, Observers
from ..log import log_fields, logger
from ..protocol.job import Job
from .metrics import Metrics, NullMetrics

__all__ = ["HistoryObserver", "LogLineObserver", "MetricsObserver", "job_observers"]


class MetricsObserver(JobObserver):
    """Prometheus: the in-flight gauge, the duration histogram, the outcome counters."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def job_started(self, job: Job) -> None:
        self.metrics.job_started(job)

    def job_finished(self, job: Job, outcome: JobOutcome) -> None:
        self.metrics.job_finished(job, outcome.outcome, outcome.duration_s)


class HistoryObserver(JobObserver):
    """``--history``: a record of each finished job, buffered for the dashboard."""

    def __init__(self, history: HistoryBuffer) -> None:
        self.history = history

    def job_finished(self, job: Job, outcome: JobOutcome) -> None:
        self.history.add(job, outcome.outcome, outcome.duration_s * 1000.0, outcome.error)


class LogLineObserver(JobObserver):
    """The ``job done`` line: info for a success, warning with the error for a failure."""

    def job_finished(self, job: Job, outcome: JobOutcome) -> None:
        if not logger.isEnabledFor(logging.INFO):  # (the common production setting is cheap)
            return
        extra = {"worker": job.worker_id, "queue": job.queue, "class": job.class_name,
                 "duration_ms": round(outcome.duration_s * 1000.0, 3),
                 "outcome": outcome.outcome}
        if outcome.error is not None:
            extra["error"] = outcome.error
        log_fields(logging.WARNING if outcome.error else logging.INFO, "job done", extra)


def job_observers(metrics: Metrics, history: Optional[HistoryBuffer],
                  user: tuple[JobObserver, ...]) -> Observers:
    """Everyone a slot tells about its jobs: ours (only those switched on), then the user's."""
    ours: list[JobObserver] = []
    if not isinstance(metrics, NullMetrics):
        ours.append(MetricsObserver(metrics))
    if history is not None:
        ours.append(HistoryObserver(history))
    ours.append(LogLineObserver())
    return Observers([*ours, *user])
