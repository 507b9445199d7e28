"""The public API is what ``pyresqueworker.__all__`` exports, and the old import paths users
may have written before the package was cut into layers still work."""

from __future__ import annotations

import importlib

import pyresqueworker

PUBLIC = [
    "AsyncBatch",
    "AsyncClient",
    "Batch",
    "BatchStatus",
    "Client",
    "DontPerform",
    "Job",
    "JobCall",
    "JobFailed",
    "JobHandle",
    "JobObserver",
    "JobOutcome",
    "JobRef",
    "JobState",
    "NoClassError",
    "NoQueueError",
    "PayloadError",
    "QueueSpec",
    "Registry",
    "Retry",
    "UnknownJobClass",
    "WorkerConfig",
    "WorkerError",
    "WorkerInfo",
    "__version__",
    "configure",
    "current_job",
    "default_async_client",
    "default_client",
    "default_registry",
    "job",
    "middleware",
    "observe",
    "run_worker",
]


def test_all_is_exactly_the_public_api() -> None:
    assert sorted(pyresqueworker.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(pyresqueworker, name), name


def test_old_client_path() -> None:
    from pyresqueworker.client import AsyncClient, Client, NoClassError, NoQueueError, WorkerInfo

    assert (Client, AsyncClient, NoQueueError, NoClassError, WorkerInfo) == (
        pyresqueworker.Client, pyresqueworker.AsyncClient, pyresqueworker.NoQueueError,
        pyresqueworker.NoClassError, pyresqueworker.WorkerInfo)


def test_old_registry_path() -> None:
    from pyresqueworker.registry import (
        DontPerform,
        PayloadError,
        Registry,
        UnknownJobClass,
        current_job,
        default_registry,
        job,
        middleware,
    )

    assert Registry is pyresqueworker.Registry
    assert default_registry is pyresqueworker.default_registry
    assert job is pyresqueworker.job and middleware is pyresqueworker.middleware
    assert current_job is pyresqueworker.current_job and DontPerform is pyresqueworker.DontPerform
    assert PayloadError is pyresqueworker.PayloadError
    assert UnknownJobClass is pyresqueworker.UnknownJobClass


def test_old_retry_and_testing_paths() -> None:
    from pyresqueworker.retry import Retry
    from pyresqueworker.testing import perform_enqueued, run_inline

    assert Retry is pyresqueworker.Retry
    assert callable(perform_enqueued) and callable(run_inline)
    jobs_testing = importlib.import_module("pyresqueworker.jobs.testing")
    assert run_inline is jobs_testing.run_inline


def test_the_documented_module_paths_import() -> None:
    for name in ("pyresqueworker.client.defaults", "pyresqueworker.client.history",
                 "pyresqueworker.jobs.schedules", "pyresqueworker.worker.isolation",
                 "pyresqueworker.protocol.connection", "pyresqueworker.web"):
        importlib.import_module(name)
