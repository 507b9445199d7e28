"""Delayed jobs for asyncio code: :class:`AsyncDelayedQueue`, ``AsyncClient.delayed``.

The twin of :class:`~pyresqueworker.client.delayed.DelayedQueue`: the same operations
(:class:`~pyresqueworker.client.delayed.DelayedOps`), awaited on ``redis.asyncio``, so every
write is byte-identical to the blocking queue's and to resque-scheduler's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Optional, Protocol

from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import Pipeline

from ._commands import arun
from ._core import doc_of
from .delayed import DelayedOps, DelayedQueue, QueueOwner, When

__all__ = ["AsyncDelayedQueue"]

class AsyncRedisOwner(QueueOwner, Protocol):
    """A :class:`QueueOwner` with its ``redis.asyncio`` client (an ``AsyncClient``)."""

    redis: AsyncRedis


class AsyncDelayedQueue:
    """:class:`~pyresqueworker.client.delayed.DelayedQueue`'s API, awaited: delayed jobs on an
    ``AsyncClient``'s Redis and namespace, in resque-scheduler's format. Write methods take
    ``pipeline=``, a ``redis.asyncio`` pipeline of the caller's."""

    def __init__(self, client: AsyncRedisOwner, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client.redis
        self.keys = client.keys
        self.ops = DelayedOps(client, clock=clock)

    @doc_of(DelayedQueue.enqueue_at)
    async def enqueue_at(self, when: When, class_name: str, *args: Any,
                         queue: Optional[str] = None,
                         pipeline: Optional[Pipeline] = None) -> Optional[int]:
        op = self.ops.enqueue_at(when, class_name, args, queue, pipeline is not None)
        return await arun(self.redis, op, pipeline)

    @doc_of(DelayedQueue.enqueue_in)
    async def enqueue_in(self, seconds: float | timedelta, class_name: str, *args: Any,
                         queue: Optional[str] = None,
                         pipeline: Optional[Pipeline] = None) -> Optional[int]:
        op = self.ops.enqueue_in(seconds, class_name, args, queue, pipeline is not None)
        return await arun(self.redis, op, pipeline)

    @doc_of(DelayedQueue.remove_delayed)
    async def remove_delayed(self, class_name: str, *args: Any, queue: Optional[str] = None,
                             pipeline: Optional[Pipeline] = None) -> Optional[int]:
        op = self.ops.remove_delayed(class_name, args, queue, pipeline is not None)
        return await arun(self.redis, op, pipeline)

    @doc_of(DelayedQueue.scheduled_at)
    async def scheduled_at(self, class_name: str, *args: Any,
                           queue: Optional[str] = None) -> list[int]:
        return await arun(self.redis, self.ops.scheduled_at(class_name, args, queue))

    @doc_of(DelayedQueue.is_delayed)
    async def is_delayed(self, class_name: str, *args: Any, queue: Optional[str] = None) -> bool:
        return bool(await self.scheduled_at(class_name, *args, queue=queue))

    @doc_of(DelayedQueue.delayed_count)
    async def delayed_count(self) -> int:
        return await arun(self.redis, self.ops.delayed_count())

    @doc_of(DelayedQueue.delayed_timestamps)
    async def delayed_timestamps(self, start: int = 0, count: Optional[int] = None) -> list[int]:
        return await arun(self.redis, self.ops.delayed_timestamps(start, count))

    @doc_of(DelayedQueue.delayed_at)
    async def delayed_at(self, timestamp: When, start: int = 0,
                         count: Optional[int] = None) -> list[dict[str, Any]]:
        return await arun(self.redis, self.ops.delayed_at(timestamp, start, count))

    @doc_of(DelayedQueue.delayed_size)
    async def delayed_size(self, timestamp: When) -> int:
        return await arun(self.redis, self.ops.delayed_size(timestamp))
