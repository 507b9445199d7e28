"""What a worker process writes about itself at start, and what it says once.

Resque's registration (the ``workers`` set and each id's ``:started`` time), the concurrency
caps every claim script reads, and the one-time log lines of a running process: a class with no
handler, ``pause-all-workers`` switched on or off.
"""

from __future__ import annotations

import threading

import redis

from ..jobs.registry import Registry
from ..log import capped, logger
from ..protocol import wire
from ..protocol.wire import Keys
from ._start_checks import handler_hint
from .config import WorkerConfig

__all__ = ["ProcessNotes", "publish_concurrency_caps", "register_workers"]


def register_workers(conn: redis.Redis, keys: Keys, worker_ids: list[str]) -> None:
    """Add the ids to Resque's ``workers`` set with their start time (Ruby's format)."""
    started = wire.started_at()
    with conn.pipeline(transaction=False) as pipe:
        for wid in worker_ids:
            pipe.sadd(keys.workers, wid)
            pipe.set(keys.worker_started(wid), started)
        pipe.execute()


def publish_concurrency_caps(conn: redis.Redis, keys: Keys, registry: Registry) -> None:
    """Tell every worker's claim script this registry's ``max_concurrency`` caps.

    A class registered here without a cap has any old cap removed, so the caps follow the code
    that is deployed.
    """
    with_cap = [h for h in registry.handlers() if h.max_concurrency is not None]
    without = [h.class_name for h in registry.handlers() if h.max_concurrency is None]
    with conn.pipeline(transaction=True) as pipe:
        for handler in with_cap:
            pipe.hset(keys.concurrency_caps, handler.class_name, str(handler.max_concurrency))
        if without:
            pipe.hdel(keys.concurrency_caps, *without)
        pipe.execute()


class ProcessNotes:
    """The log lines a process says once, whichever slot notices first."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.globally_paused = False  # the last claim found pause-all-workers on
        self._lock = threading.Lock()
        self._unknown_classes: set[str] = set()

    def unknown_class(self, class_name: str) -> None:
        """Say once per class why its jobs fail (the failure keeps Ruby's exact text)."""
        if class_name in self._unknown_classes:
            return
        self._unknown_classes.add(class_name)
        # repr and capped: the name comes from a payload, and must not forge log lines.
        shown = capped(repr(class_name))
        hint = handler_hint(self.config, "its handler")
        logger.warning(f"no Python handler is registered for class {shown}: its jobs fail "
                       f"with NameError ({hint})",
                       extra={"class": class_name, "apps": ",".join(self.config.apps) or None})

    def global_pause(self, paused: bool) -> None:
        """Log once when a claim first finds ``pause-all-workers`` on, and once when off."""
        if paused == self.globally_paused:
            return
        with self._lock:
            if paused == self.globally_paused:
                return
            self.globally_paused = paused
        if paused:
            logger.warning("paused by pause-all-workers: no job is taken until it is lifted"
                           " (pyresque unpause)")
        else:
            logger.info("pause-all-workers lifted: taking jobs again")
