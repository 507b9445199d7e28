"""Many slots' claims in few round trips, over a few shared connections.

In asyncio mode thousands of slots claim (and complete) jobs. Each would make one claim call
per job; here every call waiting at the moment a connection is free goes out in one pipeline
of ``EVALSHA`` on that connection, and each reply is settled for its slot by the slot's own
:class:`~pyresqueworker.worker._claim.Claimer`
(:meth:`~pyresqueworker.worker._claim.Claimer.prepare` /
:meth:`~pyresqueworker.worker._claim.Claimer.settle`: the same script, the same atomicity, so a
``kill -9`` loses nothing). Batching needs no timer: while every connection carries a batch,
new calls queue up and leave together with the next free connection.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

import redis

from ..log import logger
from ..protocol._resp import ScriptRun
from ._aio_link import AioLink, LinkError
from ._claim import CLAIM, Claimer
from ._claim_values import ClaimCall, Finish
from ._held import Claimed, HeldLarge

__all__ = ["MAX_BATCH", "ClaimBatcher", "link_count"]

MAX_BATCH = 128  # calls per pipeline: enough to amortise a round trip, small enough to share


class _Request(NamedTuple):
    claimer: Claimer
    call: ClaimCall
    future: asyncio.Future[Any]


class ClaimBatcher:
    """Sends prepared claim calls in pipelines over ``links`` (each used by one batch at a
    time, so the process never opens more connections than it was given)."""

    def __init__(self, links: Sequence[AioLink]) -> None:
        self._free = list(links)
        self._pending: collections.deque[_Request] = collections.deque()
        self._scheduled = False
        self._loaded: dict[int, int] = {}  # id(link) -> link.connects when CLAIM was loaded
        # id(link) -> (link.connects, digests of the scripts calls sent ahead loaded there)
        self._ahead_loaded: dict[int, tuple[int, set[str]]] = {}
        self._batches: set[asyncio.Task[None]] = set()

    async def claim(self, claimer: Claimer, queues: Sequence[str], finish: Finish,
                    run_at: str) -> Claimed | HeldLarge | str | None:
        """Finish ``finish`` and claim from ``queues`` for ``claimer``'s slot (see
        :meth:`Claimer.claim`; a :class:`HeldLarge` reply is left to the caller).

        Raises a Redis error when the call failed; if it may have run, the claimer knows
        (``needs_resolving``) and its next sync :meth:`Claimer.claim` finds out what happened.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Request(claimer, claimer.prepare(queues, finish, run_at), future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)  # after the other ready slots added their calls
        return await future  # type: ignore[no-any-return]

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._pending and self._free:
            link = self._free.pop()
            count = min(len(self._pending), MAX_BATCH)
            batch = [self._pending.popleft() for _ in range(count)]
            task = asyncio.get_running_loop().create_task(self._send(link, batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _send(self, link: AioLink, batch: list[_Request]) -> None:
        try:
            await self._round_trip(link, batch)
        except BaseException as exc:  # never leave a slot waiting on a dropped batch
            for request in batch:
                _fail(request, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._free.append(link)
            if self._pending:
                self._dispatch()

    def _ahead_loads(self, link: AioLink, batch: list[_Request]) -> list[tuple[Any, ...]]:
        """``SCRIPT LOAD`` of each script called ahead in ``batch`` not yet loaded on this
        connection (a new one may face a restarted Redis)."""
        connects, loaded = self._ahead_loaded.get(id(link), (-1, set()))
        if connects != link.connects:
            loaded = set()
            self._ahead_loaded[id(link)] = (link.connects, loaded)
        loads: list[tuple[Any, ...]] = []
        for request in batch:
            for run in request.call.ahead:
                if run.script.sha not in loaded:
                    loaded.add(run.script.sha)
                    loads.append(("SCRIPT", "LOAD", run.script.source))
        return loads

    async def _round_trip(self, link: AioLink, batch: list[_Request], again: bool = False
                          ) -> None:
        commands: list[tuple[Any, ...]] = []
        fresh = self._loaded.get(id(link)) != link.connects or not link.connects
        if fresh:  # a new connection (or a restarted Redis): load the script with the calls
            commands.append(("SCRIPT", "LOAD", CLAIM.source))
        loads = self._ahead_loads(link, batch)
        commands += loads
        for request in batch:  # (a tracked job's end goes just ahead of its slot's call)
            commands += [*(run.evalsha() for run in request.call.ahead), _evalsha(request.call)]
        try:
            replies = await link.execute(commands)
        except LinkError as exc:
            for request in batch:
                (_may_have_run if exc.sent else _fail)(request, exc)
            return
        if fresh:
            if isinstance(replies[0], Exception):
                for request in batch:
                    _may_have_run(request, replies[0])
                return
            self._loaded[id(link)] = link.connects
            replies = replies[1:]
        replies, lost = _without_ahead(batch, replies[len(loads):])
        if lost:  # (the server lost the script, or refused the call: sent again, whole, now)
            self._ahead_loaded.pop(id(link), None)
            try:
                resent = await link.execute([run.eval_args() for run in lost])
            except LinkError as exc:  # (the claims ran; each slot sends its end again)
                for request in batch:
                    _may_have_run(request, exc)
                return
            for run, reply in zip(lost, resent):
                if isinstance(reply, Exception):
                    logger.error("a script call sent ahead of a claim failed twice", extra={
                        "script": run.script.sha[:12], "error": str(reply)})
        retry: list[_Request] = []
        for request, reply in zip(batch, replies):
            if isinstance(reply, redis.exceptions.NoScriptError) and not again:
                retry.append(request)  # the script did not run: send it again, after a load
            else:
                _settle(request, reply)
        if retry:
            self._loaded.pop(id(link), None)
            await self._round_trip(link, retry, again=True)


def _without_ahead(batch: list[_Request], replies: list[Any]
                   ) -> tuple[list[Any], list[ScriptRun]]:
    """The replies to the batch's claim calls, those to the script calls sent ahead of them
    dropped; and those of the latter that failed (the server lost the script, or refused the
    call while the claim after it may have run)."""
    if not any(request.call.ahead for request in batch):
        return replies, []
    own: list[Any] = []
    lost: list[ScriptRun] = []
    at = 0
    for request in batch:
        count = len(request.call.ahead)
        for run, reply in zip(request.call.ahead, replies[at:at + count]):
            if isinstance(reply, Exception):  # (lost script, OOM, READONLY, ...: once more)
                lost.append(run)
        own.append(replies[at + count])
        at += count + 1
    return own, lost


def _evalsha(call: ClaimCall) -> tuple[Any, ...]:
    return ("EVALSHA", CLAIM.sha, len(call.keys), *call.keys, *call.args)


def _settle(request: _Request, reply: Any) -> None:
    if isinstance(reply, Exception):  # an error reply: the script may have run in part
        _may_have_run(request, reply)
        return
    try:
        settled = request.claimer.settle(request.call, reply)
    except Exception as exc:  # (a reply it cannot read: the call ran, what it did is unknown)
        _may_have_run(request, exc)
        return
    if not request.future.done():
        request.future.set_result(settled)
    # A cancelled waiter (shutdown) leaves a claimed job in its worker key, where the
    # shutdown's unregister gives it back to its queue.


def _may_have_run(request: _Request, exc: BaseException) -> None:
    """The call may have run, its reply unread: the slot's next claim resolves it first
    (never sending the old finish over a job it took); the waiter gets ``exc``."""
    request.claimer.lost(request.call)
    _fail(request, exc)


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


def link_count(concurrency: int, wanted: Optional[int]) -> int:
    """Connections for claims: ``--connections``, or by default one per 64 slots, 2 to 8."""
    if wanted is not None:
        return wanted
    return max(1, min(concurrency, 8, max(2, concurrency // 64)))
