"""``run_worker(config)``: everything the ``pyresque-work`` command does, callable from Python."""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import sys
import traceback
from typing import Optional

from ..jobs.registry import Registry, default_registry
from ..log import logger
from ..protocol.connection import ConnectionFactory, connect, redact_url
from ..protocol.failure import DIRTY_EXIT
from ..protocol.wire import Keys, WorkerId
from ._heap import keep_freed_heap
from ._process import WorkerProcess
from ._prune import Pruner
from ._start_checks import warn_at_start
from ._startup import WorkerError, retry_start_up
from ._supervisor import Supervisor
from .config import WorkerConfig
from .metrics import NULL_METRICS, Metrics, MetricsError
from .metrics_server import MetricsExporter

__all__ = ["WorkerError", "load_app", "recover_dead_process", "run_worker"]


def load_app(target: str) -> None:
    """Import a module by dotted name, or a ``.py`` file by path, to register its handlers."""
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise WorkerError(f"--app {target!r}: no such file")
        name = os.path.splitext(os.path.basename(path))[0]
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise WorkerError(f"--app {target!r}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise WorkerError(f"--app {target!r}: no module named {exc.name!r}") from None
        raise


def run_worker(config: WorkerConfig, registry: Optional[Registry] = None) -> int:
    """Run workers as configured until they are stopped; returns the exit code.

    Imports ``config.apps`` first, so with ``--processes`` the code is loaded once and shared
    by the forked workers.
    """
    registry = registry or default_registry
    if config.metrics_port is None:
        return _run_worker(config, registry, None)
    try:  # before the apps are imported: they may import prometheus_client (see the exporter)
        exporter = MetricsExporter(config, multiprocess=config.processes > 1 or config.recycles)
    except MetricsError as exc:
        raise WorkerError(str(exc)) from None
    try:
        return _run_worker(config, registry, exporter)
    finally:
        exporter.close()


def _run_worker(config: WorkerConfig, registry: Registry,
                exporter: Optional[MetricsExporter]) -> int:
    metrics = exporter.metrics if exporter is not None else NULL_METRICS
    keep_freed_heap()  # before any fork: the children inherit it
    for app in config.apps:
        try:
            load_app(app)
        except WorkerError:
            raise
        except Exception as exc:  # the app's own error: one line for the CLI, chained for Python
            raise WorkerError(f"--app {app!r} failed to import: {_where(exc)}"
                               f"{type(exc).__name__}: {exc}") from exc
    if config.periodic:
        # Check the declared schedules before forking: a bad cron string is one line and exit
        # 2 here, where in forked children it would be a restart loop.
        registry.periodic_schedules()
    if config.processes == 1 and not config.recycles:
        worker = WorkerProcess(config, registry, metrics=metrics, start_warnings=True)
        if exporter is not None:
            exporter.start()
        return worker.run()
    factory = ConnectionFactory(config.redis_url, tls=config.tls)
    probe = factory.connect(socket_connect_timeout=5.0)
    try:  # before forking, so an unreachable Redis is one line, not N crashing children
        retry_start_up(probe.ping, "connect", redact_url(factory.url), config.connect_timeout,
                       tls=config.tls)
        warn_at_start(config, registry, probe)  # here, not in each child: said once
    finally:
        probe.close()

    def child_main() -> int:
        if exporter is not None:
            exporter.in_child()
        return WorkerProcess(config, registry, metrics=metrics).run()

    if exporter is not None:
        exporter.start()
    return Supervisor(
        config.processes, child_main, str(config.queues),
        on_child_died=lambda pid: recover_dead_process(config, pid, metrics),
        on_child_exit=exporter.process_exited if exporter is not None else None,
    ).run()


def _where(exc: BaseException) -> str:
    """``file:line: `` of the innermost frame of the app's own code, if there is one."""
    if isinstance(exc, SyntaxError):  # its message already names the file and line
        return ""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not frame.filename.startswith(("<", package)):
            return f"{frame.filename}:{frame.lineno}: "
    return ""


def recover_dead_process(config: WorkerConfig, pid: int, metrics: Metrics = NULL_METRICS) -> bool:
    """Clean up after a worker process the supervisor saw die (``kill -9``, a crash); returns
    whether it held a job (it died working, so the supervisor replaces it at once).

    Its ids cannot be left for a prune: Resque's prune lock is usually held for a minute by
    the prune of some worker's start-up, so the replacement's own prune is skipped and the
    dead ids (and any job they held) would linger until the next prune. The parent knows
    the child is dead, so, like Ruby's parent writing a ``DirtyExit`` for a killed child,
    it recovers the ids at once, without the lock (each recovery is atomic anyway).
    """
    hostname = config.hostname or socket.gethostname()
    patterns = config.queues.id_queues
    ids = [str(WorkerId.build(hostname, pid, patterns, slot=i))
           for i in range(config.concurrency)]
    conn = connect(config.redis_url, tls=config.tls, socket_timeout=5, socket_connect_timeout=5)
    held_job = False
    try:
        pruner = Pruner(conn, Keys(config.namespace), ids[0], patterns, hostname,
                        config.prune_after, on_dead_worker=config.on_dead_worker,
                        max_recoveries=config.max_recoveries)
        for worker_id in ids:
            outcome = pruner.recover(worker_id, DIRTY_EXIT)
            if outcome != "idle":
                held_job = True
                metrics.recovered(1, outcome)
                logger.warning("recovered job of dead worker process",
                               extra={"dead_worker": worker_id, "outcome": outcome})
    finally:
        conn.close()
    return held_job
