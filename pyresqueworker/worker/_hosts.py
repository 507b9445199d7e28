"""What a slot may touch of its worker process: small typed protocols, and nothing else.

:class:`CycleHost` is what the slot cycle (:mod:`pyresqueworker.worker._cycle`) reads;
:class:`SlotHost` adds what either driver of a cycle uses (a thread slot, an asyncio task).
The worker process (:mod:`pyresqueworker.worker._process`) is both. Kept apart from the cycle
so that a module needing only the context does not depend on the cycle's machinery.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from ..jobs.observers import JobObserver
from ..jobs.registry import Registry
from ..jobs.tracing import JobTracing
from ..protocol._outage import OutageBook
from ..protocol.queues import QueueOrder
from ..protocol.wire import Keys
from .config import WorkerConfig
from .metrics import Metrics

__all__ = ["CycleHost", "SlotHost"]


class CycleHost(Protocol):
    """What the cycle reads of its worker process (and nothing else)."""

    queues: QueueOrder
    tracing: JobTracing
    observers: JobObserver
    outages: OutageBook  # (one per process: an outage is logged once, not per slot)
    metrics: Metrics
    stopping: threading.Event  # no new claims
    paused: threading.Event  # USR2
    stop_deadline: float  # when a stopping slot stops waiting for Redis

    def holding(self) -> bool:
        """A Sentinel failover holds writes."""

    def note_global_pause(self, paused: bool) -> None:
        """What the last claim said of ``pause-all-workers``."""

    def job_finished(self, slot: Any) -> None:
        """Count a finished job (``--max-jobs``)."""


class SlotHost(CycleHost, Protocol):
    """What either driver of a cycle (a thread or a task) uses of its worker process."""

    config: WorkerConfig
    registry: Registry
    keys: Keys

    def note_unknown_class(self, class_name: str) -> None:
        """Say once why a class's jobs fail."""
