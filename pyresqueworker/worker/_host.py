"""The worker process as its parts see it, and the asyncio runtime as its slots see it.

The slots, the job-outcome helpers, the housekeeper and the asyncio runtime are handed the
object that created them typed by these protocols, so none of them imports the module that
creates it (:class:`~pyresqueworker.worker._process.WorkerProcess` and
:class:`~pyresqueworker.worker._aio_runtime.AsyncRuntime` are the implementations).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Callable, Optional, Protocol, TypeVar

import redis

from ..client.history import HistoryBuffer
from ..jobs.observers import JobObserver
from ..jobs.registry import Registry
from ..jobs.tracing import JobTracing
from ..protocol import wire
from ..protocol._outage import OutageBook
from ..protocol.connection import ConnectionFactory
from ..protocol.queues import QueueOrder
from ._aio_doorbell import AioDoorbell
from ._claim_batch import ClaimBatcher
from ._doorbell import Doorbell
from ._prune import Pruner
from ._slot_view import SlotView
from .config import WorkerConfig
from .metrics import Metrics
from .periodic import PeriodicEnqueuer

__all__ = ["AioRuntimeHost", "WorkerHost"]

T = TypeVar("T")


class WorkerHost(Protocol):
    """What one worker process shares with its slots, housekeeper and asyncio runtime."""

    config: WorkerConfig
    registry: Registry
    keys: wire.Keys
    metrics: Metrics
    tracing: JobTracing
    history: Optional[HistoryBuffer]
    observers: JobObserver  # everyone told of each job (metrics, history, log line, user's)
    queues: QueueOrder
    outages: OutageBook
    connections: ConnectionFactory
    conn: redis.Redis
    doorbell: Doorbell
    stopping: threading.Event  # no new claims
    paused: threading.Event  # USR2
    wake: threading.Event
    stop_deadline: float
    reply_spin: float  # seconds a thread slot polls for its claim's reply (0: it sleeps)
    worker_ids: list[str]
    slots: list[SlotView]
    periodic: Optional[PeriodicEnqueuer]
    pruner: Pruner

    def holding(self) -> bool:
        """A Sentinel failover holds writes."""

    def new_connection(self) -> redis.Redis:
        """A single-socket client that follows Redis through failovers."""

    def wait_timeout(self) -> float:
        """How long a paused or blocked slot waits before looking again."""

    def run_async(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the process's event-loop thread."""

    def job_finished(self, slot: SlotView) -> None:
        """Count a finished job (``--max-jobs``)."""

    def note_unknown_class(self, class_name: str) -> None:
        """Say once why a class's jobs fail."""

    def note_global_pause(self, paused: bool) -> None:
        """Log a change of ``pause-all-workers``."""

    def recycle(self, reason: str) -> None:
        """Stop claiming and exit to be replaced."""

    def register(self, worker_ids: list[str]) -> None:
        """Write the worker ids to Redis again (after Redis lost them)."""


class AioRuntimeHost(Protocol):
    """What the asyncio runtime shares with its slots."""

    process: WorkerHost
    loop: asyncio.AbstractEventLoop
    batcher: ClaimBatcher
    doorbell: AioDoorbell
    sync_client: redis.Redis

    async def while_paused(self) -> None:
        """Wait while the process is paused and not stopping."""

    async def while_holding(self) -> None:
        """Wait while a Sentinel failover holds writes (and the process is not stopping)."""

    async def in_redis_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run sync Redis code in the Redis thread pool."""

    async def in_job_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a sync job in the job thread pool."""
