"""How every loop rides out trouble: back off with jitter, log once, say when it is over.

A worker process has many loops that touch Redis (slots, housekeeping, doorbell, scheduler,
Sentinel watch, metrics). When Redis goes away they all notice; an operator wants one line
when it starts and one when it ends, not one per loop per retry. Each loop keeps an
:class:`Outage`; the loops of one process share an :class:`OutageBook`, so only the first
loop to fail logs a warning and only the last to recover logs the all-clear. An error that is
not Redis being away (a bug, a surprise from a library) is logged with its traceback once per
streak and retried the same way: no loop ever dies of it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Optional

import redis

from ..log import logger
from .redis_errors import REDIS_ERRORS, transient_code

__all__ = ["Backoff", "Outage", "OutageBook", "is_redis_away", "server_info"]


class Backoff:
    """Capped exponential backoff with full jitter, reset on success."""

    def __init__(self, base: float = 0.1, cap: float = 10.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.cap, self.base * 2 ** min(self.failures, 20)))

    def reset(self) -> None:
        self.failures = 0


def gives_up_when_stopping(stopping: bool, owes_redis: bool, deadline: float) -> bool:
    """Whether a slot whose Redis call failed stops retrying: only once the worker is stopping,
    and then at once if it owes Redis nothing (no finished job to report), else when its
    shutdown time is over (recovery takes what is left)."""
    return stopping and (not owes_redis or time.monotonic() > deadline)


def is_redis_away(exc: BaseException) -> bool:
    """A refused, cut or timed-out connection, or a transient error reply (OOM, READONLY...)."""
    return isinstance(exc, REDIS_ERRORS) or transient_code(exc) is not None


def server_info(conn: Any, section: str) -> dict[str, Any]:
    """``INFO <section>``, or ``{}`` from a Redis-protocol server without INFO (the demo's
    fakeredis); Redis being away still raises."""
    try:
        return dict(conn.info(section))
    except redis.exceptions.ResponseError as exc:
        if is_redis_away(exc):
            raise
        return {}


class OutageBook:
    """Whether Redis is away for the loops of one process.

    The first loop to fail opens the outage (and logs it); the first loop that then gets
    through closes it for all (and logs that): Redis answered, so the others, still asleep in
    their backoff, will find it too. A loop failing after that opens a new outage.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down: set[int] = set()
        self._since = 0.0

    def down(self, loop: Outage) -> bool:
        """Record ``loop`` as failing; True if it opens the outage (the one that logs)."""
        with self._lock:
            first = not self._down
            self._down.add(id(loop))
            if first:
                self._since = time.monotonic()
            return first

    def up(self, loop: Outage) -> Optional[float]:
        """``loop`` got through: the outage's length if that closes it, else None."""
        with self._lock:
            if id(loop) not in self._down:
                return None
            self._down.clear()
            return time.monotonic() - self._since


class Outage:
    """One loop's trouble: call :meth:`failed` on every exception, :meth:`succeeded` after
    every good pass. Redis being away resumes within ``cap`` seconds of its return."""

    def __init__(self, what: str, *, base: float = 0.05, cap: float = 1.0,
                 book: Optional[OutageBook] = None, level: int = logging.WARNING,
                 on_recovered: Optional[Callable[[], None]] = None) -> None:
        self.what = what
        self.backoff = Backoff(base=base, cap=cap)
        self.book = book if book is not None else OutageBook()
        self.level = level
        self.on_recovered = on_recovered
        self._redis_down = False
        self._crashing = False

    @property
    def active(self) -> bool:
        return self.backoff.failures > 0

    def failed(self, exc: BaseException) -> float:
        """Log ``exc`` if it starts an outage (or a streak of errors); returns the delay."""
        delay = self.backoff.next_delay()
        if is_redis_away(exc):
            self._redis_down = True
            first = self.book.down(self)
            logger.log(self.level if first else logging.DEBUG, "redis unavailable, retrying",
                       extra={"loop": self.what, "error": str(exc)[:500],
                              "retry_in_s": round(delay, 2)})
        else:
            logger.log(logging.DEBUG if self._crashing else logging.ERROR,
                       "unexpected error, retrying", extra={"loop": self.what,
                                                            "error": repr(exc)[:500]},
                       exc_info=None if self._crashing else exc)
            self._crashing = True
        return delay

    def succeeded(self) -> None:
        """A pass went through: end the outage (logging it if this loop was the last)."""
        if not self.backoff.failures:
            return
        self.backoff.reset()
        self._crashing = False
        if self._redis_down:
            self._redis_down = False
            lasted = self.book.up(self)
            if lasted is not None:
                logger.info("redis reachable again", extra={
                    "loop": self.what, "outage_s": round(lasted, 2)})
        if self.on_recovered is not None:
            self.on_recovered()
