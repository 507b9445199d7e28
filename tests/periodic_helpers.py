"""What the periodic (cron) tests share: an injected clock, the periodic log, an enqueuer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from worker_helpers import NS

from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol import wire
from pyresqueworker.worker.periodic import PeriodicEnqueuer

KEYS = wire.Keys(NS)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Records(logging.Handler):
    """The periodic module's log records (attached directly: the package logger may not
    propagate to pytest's handler once a test has set up logging)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    @classmethod
    @contextmanager
    def attached(cls) -> Iterator[Records]:
        handler = cls()
        periodic_logger = logging.getLogger("pyresqueworker.periodic")
        old_level = periodic_logger.level
        periodic_logger.addHandler(handler)
        periodic_logger.setLevel(logging.DEBUG)
        try:
            yield handler
        finally:
            periodic_logger.removeHandler(handler)
            periodic_logger.setLevel(old_level)


def enqueuer(r: redis.Redis, clock: FakeClock, registry: Registry | None = None,
             **options: Any) -> PeriodicEnqueuer:
    return PeriodicEnqueuer(r, KEYS, registry, clock=clock, **options)


def queued(r: redis.Redis, queue: str) -> list[bytes]:
    return list(r.lrange(NS + f"queue:{queue}", 0, -1))


def seen_at(r: redis.Redis, when: float, registry: Registry | None = None) -> None:
    """A worker sees the schedules at ``when`` (firing what is due then) and stops: from then
    on the fleet knows them, so a worker started later owes their firings since."""
    enqueuer(r, FakeClock(when), registry).tick()
