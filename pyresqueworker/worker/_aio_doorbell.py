"""Idle async slots cost Redis nothing: they sleep on futures, and a few watchers block for them.

The asyncio counterpart of :mod:`pyresqueworker.worker._doorbell`.
A slot that found every queue empty
sleeps on a future of the process's event loop. One watcher task per queue (up to
:data:`MAX_WATCHED`), each on its own connection, blocks in
``BLMOVE queue:<q> queue:<q> LEFT LEFT`` — a move of the head onto itself, which leaves the
job queued (nothing to recover) but returns as soon as the list has an item — and then rings:
it wakes one sleeping slot, which takes the job with the atomic claim, and waits for its
answer. A slot woken this way that got a job wakes :data:`FAN_OUT` more sleepers, so a burst
reaches a thousand idle slots in about ten claim round trips. A ring that yields nothing (a
paused queue, a class at its cap, another worker was faster) makes the watcher back off, so a
non-empty queue that cannot be taken does not spin. Watchers block only while some slot
sleeps: a busy process claims after every job anyway.

Idle cost of a process: one ``BLMOVE`` per watched queue per :data:`WATCH_BLOCK` seconds, and
one claim per :data:`SAFETY_POLL` (or per ``--interval`` when some queues of a large glob are
not watched), whatever the concurrency.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Sequence
from typing import Callable, Optional

from ..log import logger
from ..protocol._outage import Outage, OutageBook
from ..protocol.wire import Keys
from ._aio_link import AioLink

__all__ = ["FAN_OUT", "MAX_WATCHED", "WATCH_BLOCK", "AioDoorbell", "Ring"]

WATCH_BLOCK = 5.0  # seconds one BLMOVE blocks (only to notice dead links and retired queues)
MAX_WATCHED = 4  # queues watched per process; more would each cost a connection
ANSWER_WAIT = 5.0  # how long a watcher waits for the woken slot's answer
MAX_BACKOFF = 2.0  # longest pause of a watcher whose rings yield nothing
FAN_OUT = 2  # sleepers a woken slot wakes when it got a job
SAFETY_POLL = 30.0  # seconds between claims by one sleeper, when every queue is watched


class Ring:
    """One ring of a watcher: the woken slot answers whether it got a job."""

    __slots__ = ("_answer",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._answer: asyncio.Future[bool] = loop.create_future()

    def answer(self, got_job: bool) -> None:
        """Called by the woken slot after its claim."""
        if not self._answer.done():
            self._answer.set_result(got_job)

    async def wait(self, timeout: float) -> Optional[bool]:
        try:
            return await asyncio.wait_for(asyncio.shield(self._answer), timeout)
        except asyncio.TimeoutError:
            return None


class AioDoorbell:
    """The sleeping slots and the queue watchers of one process's event loop."""

    def __init__(self, keys: Keys, new_link: Callable[[], AioLink], paused: Callable[[], bool],
                 poll: float, book: Optional[OutageBook] = None) -> None:
        self._keys = keys
        self._new_link = new_link
        self._paused = paused
        self._poll = poll  # --interval: how often sleepers re-check unwatched queues
        self._book = book
        self._sleepers: collections.deque[asyncio.Future[Optional[Ring]]] = collections.deque()
        self._arrived = asyncio.Event()  # a slot went to sleep
        self._wanted: set[str] = set()
        self._watched: dict[str, asyncio.Task[None]] = {}
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        self._poller = self._loop.create_task(self._poll_loop())
        if book is not None:
            book.on_reachable(self._after_outage_threadsafe)

    # -- the slots' side ------------------------------------------------------------------

    async def sleep(self, queues: Sequence[str]) -> tuple[bool, Optional[Ring]]:
        """Sleep until woken: returns (woken, the watcher's ring to answer or None).
        ``woken`` is False when the process stops."""
        if self._stopped:
            return False, None
        self._watch(queues)
        future: asyncio.Future[Optional[Ring]] = asyncio.get_running_loop().create_future()
        self._sleepers.append(future)
        self._arrived.set()
        try:
            ring = await future
        finally:
            if not future.done():
                future.cancel()  # the wakers skip it
        return not self._stopped, ring

    def wake(self, count: int, ring: Optional[Ring] = None) -> int:
        """Wake up to ``count`` sleepers (the first gets ``ring``); returns how many woke."""
        woken = 0
        while woken < count and self._sleepers:
            future = self._sleepers.popleft()
            if future.done():
                continue
            future.set_result(ring if woken == 0 else None)
            woken += 1
        return woken

    def fan_out(self) -> None:
        """A woken slot got a job: a burst may hold more, so wake more sleepers."""
        self.wake(FAN_OUT)

    @property
    def sleeping(self) -> int:
        """Slots asleep (a cancelled one may count until the next wake skips it)."""
        return len(self._sleepers)

    def stop(self) -> None:
        """Wake every sleeper (to see the stop) and end the watchers."""
        self._stopped = True
        self.wake(len(self._sleepers))
        self._poller.cancel()
        for task in list(self._watched.values()):
            task.cancel()

    def _after_outage_threadsafe(self) -> None:
        # (Called from whichever thread saw Redis answer again; after the runtime ended, the
        # loop is closed and there is nothing to restart.)
        if not self._stopped and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # (closed meanwhile)
                self._loop.call_soon_threadsafe(self._after_outage)

    def _after_outage(self) -> None:
        """Redis answers again: a watcher may still await a reply the outage lost (until its
        link's timeout), and a job pushed meanwhile rang nobody. Restart the watchers and wake
        every sleeper to claim once."""
        if self._stopped:
            return
        for task in self._watched.values():
            task.cancel()
        self._watched.clear()
        self.wake(len(self._sleepers))

    # -- the watchers ---------------------------------------------------------------------

    @property
    def unwatched(self) -> bool:
        return len(self._wanted) > len(self._watched)

    def _watch(self, queues: Sequence[str]) -> None:
        # (Every time, not only when the queues change: a watcher that ended is started again.)
        self._wanted = set(queues)
        loop = asyncio.get_running_loop()
        for queue in queues:
            if queue not in self._watched and len(self._watched) < MAX_WATCHED:
                self._watched[queue] = loop.create_task(self._watch_loop(queue))

    async def _watch_loop(self, queue: str) -> None:
        link: Optional[AioLink] = None
        key = self._keys.queue(queue)
        outage = Outage(f"watch-{queue}", book=self._book)
        backoff = 0.0
        try:
            link = self._new_link()
            while not self._stopped and queue in self._wanted:
                if not self.sleeping:
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                if self._paused():  # USR2: nobody claims, so nobody needs a ring
                    await asyncio.sleep(0.2)
                    continue
                try:
                    reply = (await link.execute(
                        [("BLMOVE", key, key, "LEFT", "LEFT", WATCH_BLOCK)]))[0]
                    if isinstance(reply, Exception):
                        raise reply
                    outage.succeeded()
                except Exception as exc:  # (until Redis answers a probe, if the link is down)
                    await outage.apause(exc, lambda: self._stopped)
                    continue
                if reply is None:
                    continue
                ring = Ring(asyncio.get_running_loop())
                if not self.wake(1, ring):
                    continue  # every slot got busy meanwhile: they claim after their jobs
                if await ring.wait(ANSWER_WAIT):
                    backoff = 0.0
                    continue
                backoff = min(MAX_BACKOFF, backoff * 2 or 0.1)
                await asyncio.sleep(backoff)
        except Exception:  # never expected; a queue must not silently stop being watched
            logger.exception("queue watcher failed", extra={"queue": queue})
        finally:
            if self._watched.get(queue) is asyncio.current_task():
                del self._watched[queue]
            if link is not None:
                await link.close()

    async def _poll_loop(self) -> None:
        """A safety net, and the pick-up of queues beyond :data:`MAX_WATCHED`: now and then
        one sleeper claims from every queue."""
        while not self._stopped:
            await asyncio.sleep(self._poll if self.unwatched else SAFETY_POLL)
            if not self._paused():
                self.wake(1)
