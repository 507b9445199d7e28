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

import asyncio
import logging
import random
import threading
import time
from typing import Any, Callable, Optional

import redis

from ..log import logger
from ._probe import Prober, is_link_down
from .redis_errors import REDIS_ERRORS, transient_code

__all__ = ["STOP_PATIENCE", "Backoff", "Outage", "OutageBook", "is_redis_away", "server_info"]

#: Seconds a stopping worker keeps trying a Redis that does not answer (to report a finished
#: job, give back running ones, unregister) before it leaves them to recovery and exits.
STOP_PATIENCE = 2.0
#: Longest wait for the prober before a loop retries its own command anyway.
PROBE_PATIENCE = 10.0
_JITTER = 0.05  # spread of the retries of a process's loops once the prober heard Redis


class Backoff:
    """Capped exponential backoff with full jitter, reset on success."""

    def __init__(self, base: float = 0.1, cap: float = 10.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.cap, self.base * 2 ** min(self.failures, 20)))

    def reset(self) -> None:
        self.failures = 0


def gives_up_when_stopping(stopping: bool, owes_redis: bool, deadline: float,
                           down_for: float = 0.0) -> bool:
    """Whether a slot whose Redis call failed stops retrying: only once the worker is stopping,
    and then at once if it owes Redis nothing (no finished job to report), else when its
    shutdown time is over or Redis has not answered it for :data:`STOP_PATIENCE` seconds
    (``down_for``): recovery takes what is left, and the stop does not hang on a dead Redis."""
    return stopping and (not owes_redis or time.monotonic() > deadline
                         or down_for >= STOP_PATIENCE)


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

    def __init__(self, probe: Optional[Callable[[], redis.Redis]] = None) -> None:
        self._lock = threading.Lock()
        self._down: set[int] = set()
        self._since = 0.0
        # With ``probe`` (fresh connections, long timeouts, no retries), loops that lost their
        # link wait for a :class:`Prober` instead of retrying blind.
        self.prober = Prober(probe) if probe is not None else None
        self._on_reachable: list[Callable[[], None]] = []

    def on_reachable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (it must not raise or block) each time an outage ends: a loop that
        did not notice the outage, blocked in a call on a connection the outage may have
        killed, is then told to move on."""
        with self._lock:
            self._on_reachable.append(callback)

    def reachable_again(self) -> None:
        """Run the :meth:`on_reachable` callbacks (an outage just ended)."""
        with self._lock:
            callbacks = list(self._on_reachable)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a listener's bug must not end the loop that noticed
                logger.exception("outage listener failed")

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
        self._failing_since = 0.0  # monotonic time this streak of failures began

    @property
    def active(self) -> bool:
        return self.backoff.failures > 0

    @property
    def down_for(self) -> float:
        """Seconds this loop has been failing (0 while it is not)."""
        return time.monotonic() - self._failing_since if self.active else 0.0

    def failed(self, exc: BaseException) -> float:
        """Log ``exc`` if it starts an outage (or a streak of errors); returns the delay."""
        if not self.active:
            self._failing_since = time.monotonic()
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

    def pause(self, exc: BaseException, stopped: Callable[[], bool]) -> None:
        """:meth:`failed`, then wait before the retry: while the link is down and the book
        has a prober, until a probe sent after now gets an answer (see
        :mod:`~pyresqueworker.protocol._probe`), else (or once ``stopped()``) the backoff."""
        delay = self.failed(exc)
        prober = self.book.prober
        if (prober is not None and is_link_down(exc)
                and prober.wait(time.monotonic(), stopped, PROBE_PATIENCE)):
            time.sleep(random.uniform(0, _JITTER))
            return
        time.sleep(delay)

    async def apause(self, exc: BaseException, stopped: Callable[[], bool]) -> None:
        """:meth:`pause` for a coroutine: the event loop goes on meanwhile."""
        delay = self.failed(exc)
        prober = self.book.prober
        if prober is not None and is_link_down(exc):
            since = time.monotonic()
            deadline = since + PROBE_PATIENCE
            while not stopped() and time.monotonic() < deadline:
                if prober.answered_since(since):
                    await asyncio.sleep(random.uniform(0, _JITTER))
                    return
                prober.want()
                await asyncio.sleep(0.02)
        await asyncio.sleep(delay)

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
                self.book.reachable_again()
        if self.on_recovered is not None:
            self.on_recovered()
