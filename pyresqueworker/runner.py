"""``run_worker(config)``: everything the ``pyresque-work`` command does, callable from Python."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Optional

from .config import WorkerConfig
from .connection import connect, describe
from .process import StartupError, WorkerProcess
from .registry import Registry, default_registry
from .slot import REDIS_ERRORS
from .supervisor import Supervisor

__all__ = ["StartupError", "load_app", "run_worker"]


def load_app(target: str) -> None:
    """Import a module by dotted name, or a ``.py`` file by path, to register its handlers."""
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise StartupError(f"--app {target!r}: no such file")
        name = os.path.splitext(os.path.basename(path))[0]
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise StartupError(f"--app {target!r}: cannot be imported")
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
            raise StartupError(f"--app {target!r}: no module named {exc.name!r}") from None
        raise


def run_worker(config: WorkerConfig, registry: Optional[Registry] = None) -> int:
    """Run workers as configured until they are stopped; returns the exit code.

    Imports ``config.apps`` first, so with ``--processes`` the code is loaded once and shared
    by the forked workers.
    """
    registry = registry or default_registry
    for app in config.apps:
        load_app(app)
    if config.processes == 1:
        return WorkerProcess(config, registry).run()
    probe = connect(config.redis_url, tls=config.tls)
    try:
        probe.ping()
    except REDIS_ERRORS as exc:
        raise StartupError(f"cannot reach Redis at {describe(probe)}: {exc}") from None
    finally:
        probe.close()
    return Supervisor(
        config.processes, lambda: WorkerProcess(config, registry).run(), str(config.queues)
    ).run()
