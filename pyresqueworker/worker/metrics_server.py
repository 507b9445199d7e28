"""Serving the worker's metrics over HTTP: ``pyresque-work --metrics-port N``.

:class:`MetricsExporter` sets up what ``--metrics-port`` serves: the
:class:`~.metrics.PrometheusMetrics` the worker records into, what only Redis knows (queue depth
and latency, heartbeats, the failed list; read when Prometheus scrapes, by
:mod:`._metrics_redis`) and the app's own metrics, served by a :class:`MetricsServer` thread.

With ``--processes`` the supervisor forks its workers, so every process writes its values to
files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) and the supervisor
serves their sum.
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

from ..log import logger
from .metrics import INSTALL_HINT, MetricsError, PrometheusMetrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from .config import WorkerConfig

__all__ = ["MetricsExporter", "MetricsServer"]


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
            raise MetricsError(INSTALL_HINT) from None
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
