"""What the worker records for Prometheus: the :class:`Metrics` interface and its two kinds.

The worker reports what happens to a :class:`Metrics`. With metrics off that is
:data:`NULL_METRICS`, whose methods do nothing, so a job costs one no-op call more.
:class:`PrometheusMetrics` keeps counters, a duration histogram and an in-flight gauge with
``prometheus_client``. Serving them (``pyresque-work --metrics-port N``), with what only Redis
knows and the multiprocess mode of ``--processes``, is :mod:`.metrics_server`'s concern.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Optional

from ..jobs.activejob import job_class
from ..protocol.job import Job

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "DURATION_BUCKETS", "MAX_CLASSES", "NULL_METRICS", "Metrics", "MetricsError",
    "NullMetrics", "PrometheusMetrics", "job_class_label",
]

MAX_CLASSES = 500  # distinct class label values per process; the rest are counted as "other"
OTHER_CLASS = "other"
UNKNOWN_CLASS = "unknown"  # a payload with no usable class (not JSON, no "class")
# From a no-op job to a long batch job: 13 buckets keep the series count per class modest.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0)
INSTALL_HINT = ("--metrics-port needs the prometheus-client package: "
                "pip install 'pyresqueworker[metrics]'")


class MetricsError(RuntimeError):
    """Metrics cannot be served (package missing, port taken); the message is one line."""


class Metrics:
    """What a worker tells its metrics. Every method here does nothing (metrics off).

    ``outcome`` is the job's log outcome: ``success``, ``failure``, ``skipped``, ``retried``.
    ``how`` says what a recovery did with a dead worker's job: ``requeued`` or ``failed``.
    """

    enabled = False

    def job_started(self, job: Job) -> None:
        """A slot began running ``job``."""

    def job_finished(self, job: Job, outcome: str, duration_s: float) -> None:
        """``job`` ended with ``outcome`` after ``duration_s`` seconds."""

    def reconnected(self) -> None:
        """A connection got Redis back after an outage."""

    def recovered(self, count: int, how: str) -> None:
        """``count`` jobs of dead workers were ``how`` (``requeued`` or ``failed``)."""


class NullMetrics(Metrics):
    """Metrics off: every call is a no-op."""


NULL_METRICS = NullMetrics()


def job_class_label(job: Job) -> str:
    """The class a job is counted under: ActiveJob's ``job_class`` rather than its wrapper."""
    return job_class(job.payload) or UNKNOWN_CLASS


class PrometheusMetrics(Metrics):
    """:class:`Metrics` kept with prometheus_client.

    ``registry`` is where the metrics register (``None``: nowhere, as in multiprocess mode,
    where the served registry reads the files instead). At most ``max_classes`` distinct class
    names become label values; later ones are counted under ``other``, so a flood of unknown
    class names cannot blow up Prometheus.
    """

    enabled = True

    def __init__(self, registry: Optional[CollectorRegistry], *,
                 max_classes: int = MAX_CLASSES,
                 buckets: Iterable[float] = DURATION_BUCKETS) -> None:
        try:
            from prometheus_client import Counter, Gauge, Histogram
        except ImportError:
            raise MetricsError(INSTALL_HINT) from None
        self.max_classes = max_classes
        self._classes: set[str] = set()
        self._classes_lock = threading.Lock()
        # Label children cached per label values: .labels() costs a lock and a dict per call.
        self._series: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._outcomes: dict[tuple[str, str, str], Any] = {}
        self.jobs = Counter("pyresque_jobs", "Jobs finished, by queue, class and outcome.",
                            ["queue", "class", "outcome"], registry=registry)
        self.duration = Histogram("pyresque_job_duration_seconds", "Time jobs took to run.",
                                  ["queue", "class"], buckets=tuple(buckets), registry=registry)
        self.in_flight = Gauge("pyresque_jobs_in_flight", "Jobs running now.",
                               ["queue", "class"], multiprocess_mode="livesum",
                               registry=registry)
        self.reconnects = Counter("pyresque_redis_reconnects",
                                  "Times a worker connection got Redis back after an outage.",
                                  registry=registry)
        self.recoveries = Counter("pyresque_recoveries",
                                  "Jobs of dead workers recovered, by what was done with them.",
                                  ["how"], registry=registry)
        for how in ("requeued", "failed"):  # shown as 0 before the first recovery
            self.recoveries.labels(how)

    def class_label(self, name: str) -> str:
        """``name``, or ``other`` once ``max_classes`` other names have been seen."""
        if name in self._classes:
            return name
        with self._classes_lock:
            if len(self._classes) < self.max_classes:
                self._classes.add(name)
                return name
        return OTHER_CLASS

    def _job_series(self, job: Job) -> tuple[Any, Any]:
        key = (job.queue, self.class_label(job_class_label(job)))
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (self.in_flight.labels(*key), self.duration.labels(*key))
        return series

    def job_started(self, job: Job) -> None:
        self._job_series(job)[0].inc()

    def job_finished(self, job: Job, outcome: str, duration_s: float) -> None:
        in_flight, duration = self._job_series(job)
        in_flight.dec()
        duration.observe(duration_s)
        key = (job.queue, self.class_label(job_class_label(job)), outcome)
        counter = self._outcomes.get(key)
        if counter is None:
            counter = self._outcomes[key] = self.jobs.labels(*key)
        counter.inc()

    def reconnected(self) -> None:
        self.reconnects.inc()

    def recovered(self, count: int, how: str) -> None:
        if count > 0:
            self.recoveries.labels(how).inc(count)
