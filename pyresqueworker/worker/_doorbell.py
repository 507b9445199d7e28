"""Waiting for work at almost no cost to Redis: one blocking watcher per queue per process.

An idle slot does not poll. It sleeps on a condition of its process, and a watcher thread per
watched queue blocks in ``BLMOVE queue:<q> queue:<q> LEFT LEFT <timeout>`` on its own
connection: a move of the head onto itself, which changes nothing but returns as soon as the
list has an item. The job stays in its queue (nothing to recover); the watcher "rings", which
wakes one sleeping slot, and that slot takes the job with the atomic claim script.

The watcher then waits for the slot's answer. A slot that got a job means there may be more:
the watcher blocks again at once, and its next ``BLMOVE`` returns at once if the queue still
has items, waking the next sleeper (a burst fans out one slot per ring). A slot that got
nothing (the queue is paused, a capped class is at its cap, another worker was faster) makes
the watcher back off, doubling up to :data:`MAX_BACKOFF`, so a non-empty queue that cannot be
taken does not spin. Watchers block only while some slot of the process is asleep: a busy
process claims after every job anyway.

An idle process costs about one command per queue per :data:`WATCH_TIMEOUT` (the blocking
call's timeout, needed only to notice dead connections and retired queues), whatever its
number of slots and whatever ``--interval``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import Optional

import redis

from ..log import logger
from ..protocol._outage import Outage, OutageBook
from ..protocol._resp import command
from ..protocol.wire import Keys

__all__ = ["MAX_BACKOFF", "MAX_WATCHED", "WATCH_TIMEOUT", "Doorbell", "Ring"]

WATCH_TIMEOUT = 10.0  # seconds one BLMOVE blocks
MAX_BACKOFF = 10.0  # longest pause of a watcher whose rings yield nothing
ANSWER_WAIT = 5.0  # how long a watcher waits for the woken slot's answer
# Beyond this many queues (a glob over many), the rest are not watched: sleeping slots
# re-check them every --interval instead.
MAX_WATCHED = 16
_CHUNK = 0.5  # sleepers look at the stop flag this often (no Redis involved)


class Ring:
    """One ring of a watcher: the woken slot answers whether it got a job."""

    __slots__ = ("_answered", "got_job")

    def __init__(self) -> None:
        self._answered = threading.Event()
        self.got_job = False

    def answer(self, got_job: bool) -> None:
        """Called by the slot after its claim."""
        self.got_job = got_job
        self._answered.set()

    def wait(self, timeout: float) -> Optional[bool]:
        return self.got_job if self._answered.wait(timeout) else None


class Doorbell:
    """The sleepers and queue watchers of one worker process."""

    def __init__(self, keys: Keys, connect: Callable[[], redis.Redis], stopping: threading.Event,
                 book: Optional[OutageBook] = None) -> None:
        self._keys = keys
        self._connect = connect  # a connection of its own per watcher
        self._stopping = stopping
        self._book = book
        self._cond = threading.Condition()
        self._sleepers = 0
        self._rings: collections.deque[Ring] = collections.deque()
        self._watched: dict[str, threading.Thread] = {}
        self._wanted: set[str] = set()
        if book is not None:
            book.on_reachable(self._after_outage)

    # -- the slots' side ------------------------------------------------------------------

    def sleep(self, queues: Sequence[str], poll: float) -> Optional[Ring]:
        """Sleep until a watcher rings (returns its :class:`Ring`, to be answered) or ``poll``
        seconds pass, or the process stops (returns None)."""
        self._watch(queues)
        deadline = time.monotonic() + poll
        with self._cond:
            self._sleepers += 1
            self._cond.notify_all()  # watchers waiting for a sleeper start blocking
            try:
                while not self._rings:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stopping.is_set():
                        return None
                    self._cond.wait(min(left, _CHUNK))
                return self._rings.popleft()
            finally:
                self._sleepers -= 1

    @property
    def unwatched(self) -> bool:
        """Some queues are beyond :data:`MAX_WATCHED`: sleepers must poll them."""
        return len(self._wanted) > len(self._watched)

    def _watch(self, queues: Sequence[str]) -> None:
        """Start a watcher for each queue not yet watched (up to :data:`MAX_WATCHED`), or whose
        watcher ended; retire those of queues no longer wanted (a glob's queue that went away)."""
        wanted = set(queues)
        if wanted == self._wanted and len(self._watched) >= min(len(wanted), MAX_WATCHED):
            return
        with self._cond:
            self._wanted = wanted
            for queue in queues:
                if queue not in self._watched and len(self._watched) < MAX_WATCHED:
                    thread = threading.Thread(target=self._watch_loop, args=(queue,),
                                              name=f"watch-{queue}", daemon=True)
                    self._watched[queue] = thread
                    thread.start()

    def _after_outage(self) -> None:
        """Redis answers again. A watcher may still be blocked in a call whose reply the outage
        lost, waiting out its socket timeout, and a job pushed meanwhile rang nobody: start a
        fresh watcher per queue (the old one leaves once its call returns) and wake every
        sleeper to claim once."""
        with self._cond:  # (re-entrant: _watch takes it too)
            self._watched.clear()
            while self._sleepers > len(self._rings):
                self._rings.append(Ring())  # (nobody waits for these answers)
            self._cond.notify_all()
            queues = sorted(self._wanted)
            self._wanted = set()  # so that _watch starts them again
            self._watch(queues)

    # -- the watchers ----------------------------------------------------------------------

    def _watch_loop(self, queue: str) -> None:
        key = self._keys.queue(queue)
        conn: Optional[redis.Redis] = None
        outage = Outage(f"watch-{queue}", book=self._book)
        backoff = 0.0
        try:
            while self._await_sleeper(queue):
                try:
                    if conn is None:
                        conn = self._connect()
                    rang = self._block(conn, key)
                    outage.succeeded()
                except Exception as exc:
                    # (Until Redis answers a probe, when the link is down.)
                    outage.pause(exc, self._stopping.is_set)
                    continue
                if not rang or not self._current(queue):
                    continue
                answer = self._ring()
                if answer is False:
                    backoff = min(max(backoff * 2, 0.25), MAX_BACKOFF)
                    self._stopping.wait(backoff)
                elif answer is True:
                    backoff = 0.0
        except Exception:  # never expected; a queue must not silently stop being watched
            logger.exception("queue watcher failed", extra={"queue": queue})
        finally:
            with self._cond:
                if self._watched.get(queue) is threading.current_thread():
                    del self._watched[queue]
            if conn is not None:
                conn.close()

    def _await_sleeper(self, queue: str) -> bool:
        """Wait until some slot sleeps; False when the process stops or the queue is retired."""
        with self._cond:
            while True:
                if (self._stopping.is_set() or queue not in self._wanted
                        or not self._current(queue)):
                    return False
                if self._sleepers > len(self._rings):
                    return True
                self._cond.wait(_CHUNK)

    def _current(self, queue: str) -> bool:
        """Whether the calling thread is still ``queue``'s watcher (not replaced after an
        outage, see :meth:`_after_outage`)."""
        return self._watched.get(queue) is threading.current_thread()

    def _block(self, conn: redis.Redis, key: str) -> bool:
        started = time.monotonic()
        rang = command(conn, "BLMOVE", key, key, "LEFT", "LEFT", WATCH_TIMEOUT) is not None
        if not rang and time.monotonic() - started < WATCH_TIMEOUT / 2:
            # A server that does not really block (fakeredis) must not make us spin.
            self._stopping.wait(1.0)
        return rang

    def _ring(self) -> Optional[bool]:
        """Wake one sleeper and wait for its answer (None: nobody slept, or no answer)."""
        ring = Ring()
        with self._cond:
            if self._sleepers <= len(self._rings):
                return None  # every slot is busy: each claims again when it finishes
            self._rings.append(ring)
            self._cond.notify_all()
        return ring.wait(ANSWER_WAIT)
