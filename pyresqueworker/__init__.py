"""pyresqueworker: a Python worker and client that speaks Ruby Resque's Redis protocol.

Register handlers by Resque class name, enqueue from Python or Ruby, and run
``pyresque-work --queues high=2,low=1 --app myapp.jobs`` beside Ruby Resque workers.
"""

from __future__ import annotations

from ._version import __version__
from .client._aio_client import AsyncClient
from .client._client import Client, NoClassError, NoQueueError, WorkerInfo
from .client._workflow_ops import BatchStatus, JobFailed, JobState
from .client.defaults import configure, default_async_client, default_client
from .client.refs import AsyncBatch, Batch, JobRef
from .jobs.handles import JobHandle
from .jobs.observers import JobObserver, JobOutcome
from .jobs.registry import (
    DontPerform,
    PayloadError,
    Registry,
    UnknownJobClass,
    current_job,
    default_registry,
    job,
    middleware,
    observe,
)
from .jobs.retry import Retry
from .protocol.job import Job, JobCall
from .protocol.queues import QueueSpec
from .worker.config import WorkerConfig
from .worker.runner import WorkerError, run_worker

__all__ = [
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
