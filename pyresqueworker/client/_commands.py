"""Redis operations written once, run on a blocking or an asyncio connection (sans-IO).

An operation is a generator: it yields a :class:`Batch` of commands (one command, a pipeline
or a ``MULTI``), receives the list of replies, and returns its result. It never touches a
socket, so :class:`~pyresqueworker.Client` runs it with :func:`run` on a
``redis.Redis`` and :class:`~pyresqueworker.AsyncClient` with :func:`arun` on a
``redis.asyncio.Redis``: both send the same commands with the same bytes.

A batch marked ``write`` goes onto the caller's pipeline when one is given (``pipeline=``):
it is queued there, not executed, and the operation receives no replies for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, TypeVar, Union

import redis
import redis.asyncio

from ..protocol._resp import LuaScript
from ..protocol.connection import CredentialsError, credentials_error

__all__ = ["Batch", "Command", "Op", "ScriptCall", "arun", "call", "cmd", "run", "send"]

T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One Redis command, e.g. ``Command(("RPUSH", key, item))``."""

    args: tuple[Any, ...]


@dataclass(frozen=True)
class ScriptCall:
    """A Lua script call: ``EVALSHA`` (loading the script when needed), or ``EVAL`` with the
    source inside a pipeline, where a missing script could not be loaded and retried."""

    script: LuaScript
    keys: Sequence[Any]
    args: Sequence[Any]

    def eval_args(self) -> tuple[Any, ...]:
        return ("EVAL", self.script.source, len(self.keys), *self.keys, *self.args)


Call = Union[Command, ScriptCall]


@dataclass(frozen=True)
class Batch:
    """Commands sent together: alone, as a pipeline, or in ``MULTI``/``EXEC``
    (``transaction``). ``raise_on_error=False`` hands error replies back as exceptions in
    the reply list instead of raising."""

    calls: Sequence[Call]
    transaction: bool = False
    write: bool = False
    raise_on_error: bool = True


#: An operation returning ``T``: yields batches, receives their replies.
Op = Generator[Batch, list[Any], T]


def call(*args: Any) -> Op[Any]:
    """One command; ``reply = yield from call("LLEN", key)``."""
    replies = yield Batch([Command(args)])
    return replies[0]


def send(*calls: Call, transaction: bool = False, write: bool = False) -> Op[list[Any]]:
    """Several commands as one batch; returns their replies (``[]`` when queued on the
    caller's pipeline)."""
    replies = yield Batch(list(calls), transaction=transaction, write=write)
    return replies


def cmd(*args: Any) -> Command:
    """Shorthand for :class:`Command`."""
    return Command(args)


# -- the blocking driver ------------------------------------------------------------------


def run(conn: redis.Redis, op: Op[T], pipeline: Optional[redis.client.Pipeline] = None) -> T:
    """Run ``op`` on ``conn``; its write batches go onto ``pipeline`` when given. An error
    sending a batch is raised inside ``op`` (its ``finally`` and ``with`` blocks run now,
    where it stands), and from here unless ``op`` handles it."""
    replies: Any = None
    error: Optional[BaseException] = None
    try:
        while True:
            batch = op.send(replies) if error is None else op.throw(error)
            try:
                replies, error = _send_sync(conn, batch, pipeline), None
            except BaseException as exc:
                error = exc
    except StopIteration as done:
        result: T = done.value
        return result
    except CredentialsError:
        raise
    except redis.exceptions.AuthenticationError as exc:
        # Redis's words ("HELLO must be called with the client already authenticated...")
        # do not say that the URL lacks a password: say it, as the command lines do.
        raise credentials_error(exc, conn) from exc


def _send_sync(conn: redis.Redis, batch: Batch,
               pipeline: Optional[redis.client.Pipeline]) -> list[Any]:
    if pipeline is not None and batch.write:
        for item in batch.calls:
            pipeline.execute_command(*_pipeline_args(item))  # type: ignore[no-untyped-call]
        return []
    if len(batch.calls) == 1 and not batch.transaction:
        item = batch.calls[0]
        try:
            if isinstance(item, ScriptCall):
                return [item.script(conn, item.keys, item.args)]
            return [conn.execute_command(*item.args)]  # type: ignore[no-untyped-call]
        except redis.exceptions.ResponseError as exc:
            if batch.raise_on_error:
                raise
            return [exc]
    pipe = conn.pipeline(transaction=batch.transaction)
    for item in batch.calls:
        pipe.execute_command(*_pipeline_args(item))  # type: ignore[no-untyped-call]
    return list(pipe.execute(raise_on_error=batch.raise_on_error))


def _pipeline_args(item: Call) -> tuple[Any, ...]:
    return item.eval_args() if isinstance(item, ScriptCall) else item.args


# -- the asyncio driver -------------------------------------------------------------------


async def arun(conn: redis.asyncio.Redis, op: Op[T],
               pipeline: Optional[redis.asyncio.client.Pipeline] = None) -> T:
    """Run ``op`` on an asyncio ``conn``; its write batches go onto ``pipeline`` when given
    (errors as with :func:`run`: a cancel too is raised inside ``op``)."""
    replies: Any = None
    error: Optional[BaseException] = None
    try:
        while True:
            batch = op.send(replies) if error is None else op.throw(error)
            try:
                replies, error = await _send_async(conn, batch, pipeline), None
            except BaseException as exc:
                error = exc
    except StopIteration as done:
        result: T = done.value
        return result
    except CredentialsError:
        raise
    except redis.exceptions.AuthenticationError as exc:
        raise credentials_error(exc, conn) from exc  # explained, as in run()


async def _send_async(conn: redis.asyncio.Redis, batch: Batch,
                      pipeline: Optional[redis.asyncio.client.Pipeline]) -> list[Any]:
    if pipeline is not None and batch.write:
        for item in batch.calls:
            queued = pipeline.execute_command(*_pipeline_args(item))
            if inspect.isawaitable(queued):  # a WATCHing pipeline runs commands at once
                await queued
        return []
    if len(batch.calls) == 1 and not batch.transaction:
        item = batch.calls[0]
        try:
            if isinstance(item, ScriptCall):
                return [await item.script.acall(conn, item.keys, item.args)]
            return [await conn.execute_command(*item.args)]  # type: ignore[no-untyped-call]
        except redis.exceptions.ResponseError as exc:
            if batch.raise_on_error:
                raise
            return [exc]
    pipe = conn.pipeline(transaction=batch.transaction)
    for item in batch.calls:
        pipe.execute_command(*_pipeline_args(item))
    return list(await pipe.execute(raise_on_error=batch.raise_on_error))
