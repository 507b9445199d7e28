"""Prometheus metrics for the worker: ``pyresque-work --metrics-port N``.

The worker reports what happens to a :class:`Metrics`. With metrics off that is
:data:`NULL_METRICS`, whose methods do nothing, so a job costs one no-op call more.
:class:`PrometheusMetrics` keeps counters, a duration histogram and an in-flight gauge with
``prometheus_client``; what only Redis knows (queue depth and latency, heartbeats, the failed
list) is read when Prometheus scrapes, by :mod:`pyresqueworker.worker._metrics_redis`.

With ``--processes`` the supervisor forks its workers, so every process writes its values to
files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and the supervisor
serves their sum. :class:`MetricsExporter` sets that up.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..jobs.activejob import job_class
from ..log import logger
from ..protocol.job import Job

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from .config import WorkerConfig

__all__ = [
    "DURATION_BUCKETS", "MAX_CLASSES", "NULL_METRICS", "Metrics", "MetricsError",
    "MetricsExporter", "MetricsServer", "NullMetrics", "PrometheusMetrics", "job_class_label",
]

MAX_CLASSES = 500  # distinct class label values per process; the rest are counted as "other"
OTHER_CLASS = "other"
UNKNOWN_CLASS = "unknown"  # a payload with no usable class (not JSON, no "class")
# From a no-op job to a long batch job: 13 buckets keep the series count per class modest.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0)
_INSTALL_HINT = ("--metrics-port needs the prometheus-client package: "
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
            raise MetricsError(_INSTALL_HINT) from None
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


# -- serving ----------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """One line per scrape on stderr is noise; scrapes are not logged."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the exit


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """An HTTP server for ``registry`` at ``/metrics``; binds at once, serves after start()."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        from prometheus_client import make_wsgi_app

        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        try:
            self.httpd = make_server(host, port, make_wsgi_app(registry), server_class,
                                     handler_class=_QuietHandler)
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise MetricsError(f"cannot serve metrics on {host}:{port}: {reason}") from None
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()

    def close_in_child(self) -> None:
        """In a forked worker: drop the inherited listening socket (the parent keeps its own)."""
        self.httpd.socket.close()


class _Bridge:
    """Serves the default registry's metrics (the app's own, process_*) next to ours."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # unchecked names: the app may register metrics after us

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


class MetricsExporter:
    """Everything ``--metrics-port`` sets up in the serving process.

    ``multiprocess`` (with ``--processes`` or recycling): creates a fresh
    ``PROMETHEUS_MULTIPROC_DIR`` (unless one is set already) *before* prometheus_client is
    imported, so every forked worker writes its values there, and serves their sum. Otherwise
    the metrics live in this process and the default registry is served beside them.
    Create it before the app is imported: an app that imports prometheus_client first would
    fix its single-process mode.
    """

    def __init__(self, config: WorkerConfig, *, multiprocess: bool) -> None:
        assert config.metrics_port is not None
        self.multiprocess = multiprocess
        self.directory: Optional[str] = None
        self._own_directory = False
        self.server: Optional[MetricsServer] = None
        self._collector_conn: Any = None
        try:
            self._setup(config)
        except BaseException:
            self.close()
            raise

    def _setup(self, config: WorkerConfig) -> None:
        if self.multiprocess:
            self.directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            if not self.directory:
                self.directory = tempfile.mkdtemp(prefix="pyresque-metrics-")
                self._own_directory = True
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.directory
            elif not os.path.isdir(self.directory):
                raise MetricsError(f"PROMETHEUS_MULTIPROC_DIR {self.directory!r} is not a "
                                   "directory")
        try:
            from prometheus_client import REGISTRY, CollectorRegistry, values
            from prometheus_client.multiprocess import MultiProcessCollector
        except ImportError:
            raise MetricsError(_INSTALL_HINT) from None
        if self.multiprocess and values.ValueClass is values.MutexValue:
            raise MetricsError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR "
                               "was set; set it before importing it to use --processes")
        served = CollectorRegistry()
        if self.multiprocess:
            MultiProcessCollector(served, path=self.directory)  # type: ignore[no-untyped-call]
            self.metrics = PrometheusMetrics(None)
        else:
            self.metrics = PrometheusMetrics(served)
            served.register(_Bridge(REGISTRY))
        from ..protocol.connection import connect
        from ..protocol.wire import Keys
        from ._metrics_redis import RedisCollector

        self._collector_conn = connect(config.redis_url, tls=config.tls, socket_timeout=5,
                                       socket_connect_timeout=5)
        served.register(RedisCollector(self._collector_conn, Keys(config.namespace),
                                       config.hostname or socket.gethostname()))
        self.server = MetricsServer(served, config.metrics_host, config.metrics_port or 0)

    def start(self) -> None:
        """Serve scrapes from a daemon thread."""
        assert self.server is not None
        self.server.start()
        logger.info("serving metrics", extra={
            "url": f"http://{self.server.host}:{self.server.port}/metrics",
            "multiprocess": self.multiprocess})

    def in_child(self) -> None:
        """Call first thing in a forked worker process."""
        if self.server is not None:
            self.server.close_in_child()

    def process_exited(self, pid: int) -> None:
        """A worker process exited: its live gauges (jobs in flight) stop counting."""
        if self.directory is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Stop serving and remove the multiprocess directory this exporter created."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._collector_conn is not None:
            self._collector_conn.close()
            self._collector_conn = None
        if self._own_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == self.directory:
                del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            self._own_directory = False
