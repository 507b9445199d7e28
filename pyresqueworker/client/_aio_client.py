"""The Resque client for asyncio code: :class:`AsyncClient`, on ``redis.asyncio``.

It runs the very operations :class:`~pyresqueworker.Client` runs (see
:mod:`pyresqueworker.client._commands` and :mod:`pyresqueworker.client._core`), so every write is
byte-identical to the blocking client's and to Ruby's, and every reading returns the same.
Each method has the blocking client's signature and documentation and is awaited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Callable, Optional

from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import Pipeline

from ..jobs.retry import Retry
from ..protocol.connection import connect_async, describe
from ..protocol.urls import resolve_namespace
from ._aio_delayed import AsyncDelayedQueue
from ._client import Client
from ._commands import Op, T, arun
from ._core import REGISTERED_QUEUE, ClientCore, doc_of
from ._failed_ops import Progress, Raw
from ._workflow_ops import BatchStatus, JobState, block_seconds, outcome
from .delayed import When
from .inspection import WorkerInfo, redis_id
from .refs import AsyncBatch, Callback, DependsOn, JobRef

__all__ = ["AsyncClient"]

class AsyncClient(ClientCore):
    """A Resque client on ``redis.asyncio``: :class:`~pyresqueworker.Client`'s API,
    awaited.

    ``redis``: a ``redis.asyncio.Redis`` or a URL (the same as ``url=``; every URL
    :func:`~pyresqueworker.protocol.connection.connect_async` takes: ``redis://``, ``rediss://``,
    ``unix://``, ``redis+sentinel://``, with ACL users and passwords). Without a URL or a
    namespace, both come from the environment as for :class:`~pyresqueworker.Client`.
    ``queue_for``: as for :class:`~pyresqueworker.Client`. Close it with
    ``await client.close()`` or use it as ``async with AsyncClient(url) as client:``.
    """

    def __init__(
        self,
        redis: Optional[AsyncRedis | str] = None,
        *,
        url: Optional[str] = None,
        namespace: Optional[str] = None,
        queue_for: Optional[Callable[[str], Optional[str]]] = REGISTERED_QUEUE,
    ) -> None:
        namespace = resolve_namespace(namespace)
        if isinstance(redis, str):
            if url is not None:
                raise TypeError("pass the Redis URL once: AsyncClient(url) or AsyncClient(url=...)")
            redis, url = None, redis
        self._owns_connection = redis is None
        self.redis: AsyncRedis = connect_async(url) if redis is None else redis
        super().__init__(namespace, queue_for)

    def __repr__(self) -> str:
        return f"AsyncClient(redis={describe(self.redis)!r}, namespace={self.keys.ns!r})"

    async def _run(self, op: Op[T], pipeline: Optional[Pipeline] = None) -> T:
        return await arun(self.redis, op, pipeline)

    async def close(self) -> None:
        """Close the connection pool if this client created it from a URL."""
        if self._owns_connection:
            # The pool was made for this client (connect_async), which redis-py does not close
            # with the client unless told. aclose(): redis-py >= 5.0.1; close() before.
            aclose = getattr(self.redis, "aclose", None) or self.redis.close
            await aclose(close_connection_pool=True)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: Optional[type[BaseException]],
                        error: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.close()

    # -- enqueue (spec §4) ----------------------------------------------------------------

    @doc_of(Client.enqueue)
    async def enqueue(self, class_name: str, *args: Any, queue: Optional[str] = None,
                      pipeline: Optional[Pipeline] = None,
                      retry: Optional[Retry] = None, job_id: Optional[str] = None,
                      result_ttl: Optional[int] = None, depends_on: Optional[DependsOn] = None,
                      on_dependency_failure: str = "cancel") -> JobRef:
        track = self._tracking(class_name, job_id, result_ttl, depends_on, on_dependency_failure)
        return await self._run(self._enqueue_op(class_name, args, queue, retry, job_id,
                                                pipeline is not None, track), pipeline)

    @doc_of(Client.enqueue_to)
    async def enqueue_to(self, queue: str, class_name: str, *args: Any,
                         pipeline: Optional[Pipeline] = None,
                         retry: Optional[Retry] = None, job_id: Optional[str] = None,
                         result_ttl: Optional[int] = None,
                         depends_on: Optional[DependsOn] = None,
                         on_dependency_failure: str = "cancel") -> JobRef:
        track = self._tracking(class_name, job_id, result_ttl, depends_on, on_dependency_failure)
        op = self._enqueue_to_op(queue, class_name, args, retry, job_id, pipeline is not None,
                                 track)
        return await self._run(op, pipeline)

    @doc_of(Client.enqueue_many)
    async def enqueue_many(
        self, queue: str, jobs: Iterable[tuple[str, Sequence[Any]]], *, batch: int = 1000,
        pipeline: Optional[Pipeline] = None,
    ) -> int:
        return await self._run(self._enqueue_many_op(queue, jobs, batch), pipeline)

    @property
    def delayed(self) -> AsyncDelayedQueue:
        """The delayed-job API: listing, ``scheduled_at``, ``is_delayed``, sizes (awaited)."""
        return AsyncDelayedQueue(self, clock=self.clock)

    @doc_of(Client.enqueue_at)
    async def enqueue_at(self, when: When, class_name: str, *args: Any,
                         queue: Optional[str] = None, pipeline: Optional[Pipeline] = None,
                         result_ttl: Optional[int] = None) -> JobRef:
        track = self._tracking(class_name, None, result_ttl, None, "cancel")
        return await self._run(self._enqueue_at_op(when, class_name, args, queue,
                                                   pipeline is not None, track), pipeline)

    @doc_of(Client.enqueue_in)
    async def enqueue_in(self, seconds: float | timedelta, class_name: str, *args: Any,
                         queue: Optional[str] = None, pipeline: Optional[Pipeline] = None,
                         result_ttl: Optional[int] = None) -> JobRef:
        track = self._tracking(class_name, None, result_ttl, None, "cancel")
        return await self._run(self._enqueue_in_op(seconds, class_name, args, queue,
                                                   pipeline is not None, track), pipeline)

    # -- results, dependencies, batches -----------------------------------------------------

    @doc_of(Client.result)
    async def result(self, job_id: str, timeout: Optional[float] = None) -> Any:
        kwargs = self.redis.connection_pool.connection_kwargs
        block = block_seconds(kwargs.get("socket_timeout"))
        return outcome(str(job_id), await self._run(self._wait_op(job_id, timeout, block)))

    @doc_of(Client.status)
    async def status(self, job_id: str) -> str:
        return await self._run(self._status_op(job_id))

    def batch(self, *, on_success: Optional[Callback] = None,
              on_complete: Optional[Callback] = None, queue: Optional[str] = None,
              description: str = "", result_ttl: Optional[int] = None) -> AsyncBatch:
        """:meth:`Client.batch`, used as ``async with client.batch(...) as b:``."""
        return AsyncBatch(self, self._run, on_success, on_complete, queue, description, result_ttl)

    @doc_of(Client.batch_status)
    async def batch_status(self, batch_id: str) -> Optional[BatchStatus]:
        return await self._run(self._batch_status_op(batch_id))

    @doc_of(Client.batches)
    async def batches(self, limit: int = 50) -> list[BatchStatus]:
        return await self._run(self._batches_op(limit))

    @doc_of(Client.job_states)
    async def job_states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return await self._run(self._job_states_op(job_ids))

    # -- unique jobs ------------------------------------------------------------------------

    @doc_of(Client.enqueue_unique)
    async def enqueue_unique(self, class_name: str, *args: Any, queue: Optional[str] = None,
                             pipeline: Optional[Pipeline] = None) -> Optional[JobRef]:
        return await self._run(self._unique_op(class_name, args, queue), pipeline)

    @doc_of(Client.enqueue_unique_by_key)
    async def enqueue_unique_by_key(self, class_name: str, key: Any, *args: Any,
                                    queue: Optional[str] = None,
                                    pipeline: Optional[Pipeline] = None) -> Optional[JobRef]:
        op = self._unique_op(class_name, args, queue, key=key, keyed=True)
        return await self._run(op, pipeline)

    @doc_of(Client.enqueue_unique_at)
    async def enqueue_unique_at(self, when: When, class_name: str, *args: Any,
                                queue: Optional[str] = None, key: Any = None,
                                pipeline: Optional[Pipeline] = None) -> Optional[JobRef]:
        op = self._unique_op(class_name, args, queue, key=key, keyed=key is not None, when=when)
        return await self._run(op, pipeline)

    @doc_of(Client.enqueue_unique_in)
    async def enqueue_unique_in(self, seconds: float | timedelta, class_name: str, *args: Any,
                                queue: Optional[str] = None, key: Any = None,
                                pipeline: Optional[Pipeline] = None) -> Optional[JobRef]:
        op = self._unique_op(class_name, args, queue, key=key, keyed=key is not None,
                             delay=seconds)
        return await self._run(op, pipeline)

    # -- removing and ActiveJob -------------------------------------------------------------

    @doc_of(Client.remove_delayed)
    async def remove_delayed(self, class_name: str, *args: Any,
                             queue: Optional[str] = None) -> int:
        return await self._run(self._remove_delayed_op(class_name, args, queue)) or 0

    @doc_of(Client.delayed_count)
    async def delayed_count(self) -> int:
        return await self._run(self._delayed_count_op())

    @doc_of(Client.dequeue)
    async def dequeue(self, class_name: str, *args: Any, queue: str) -> int:
        return await self._run(self._dequeue_op(class_name, args, queue))

    @doc_of(Client.enqueue_active_job)
    async def enqueue_active_job(
        self,
        job_class: str,
        *args: Any,
        queue: str = "default",
        job_id: Optional[str] = None,
        priority: Optional[int] = None,
        locale: str = "en",
        timezone: Optional[str] = None,
        pipeline: Optional[Pipeline] = None,
        **kwargs: Any,
    ) -> JobRef:
        return await self._run(self._active_job_op(
            job_class, args, kwargs, queue, job_id, priority, locale, timezone,
            pipeline is not None), pipeline)

    # -- queues and pausing -----------------------------------------------------------------

    @doc_of(Client.size)
    async def size(self, queue: str) -> int:
        return await self._run(self._size_op(queue))

    @doc_of(Client.peek_raw)
    async def peek_raw(self, queue: str, start: int = 0, count: int = 1) -> list[Raw]:
        return await self._run(self._peek_raw_op(queue, start, count))

    @doc_of(Client.peek)
    async def peek(self, queue: str, start: int = 0, count: int = 1) -> list[dict[str, Any]]:
        return await self._run(self._peek_op(queue, start, count))

    @doc_of(Client.queues)
    async def queues(self) -> list[str]:
        return await self._run(self._queues_op())

    @doc_of(Client.remove_queue)
    async def remove_queue(self, queue: str) -> None:
        await self._run(self._remove_queue_op(queue))

    @doc_of(Client.pause_queue)
    async def pause_queue(self, queue: str) -> None:
        await self._run(self._command_op("SADD", self.keys.paused_queues, queue))

    @doc_of(Client.unpause_queue)
    async def unpause_queue(self, queue: str) -> None:
        await self._run(self._command_op("SREM", self.keys.paused_queues, queue))

    @doc_of(Client.paused_queues)
    async def paused_queues(self) -> list[str]:
        return await self._run(self._paused_queues_op())

    @doc_of(Client.pause_all)
    async def pause_all(self) -> None:
        await self._run(self._command_op("SET", self.keys.pause_all, "true"))

    @doc_of(Client.unpause_all)
    async def unpause_all(self) -> None:
        await self._run(self._command_op("DEL", self.keys.pause_all))

    @doc_of(Client.all_paused)
    async def all_paused(self) -> bool:
        return await self._run(self._all_paused_op())

    # -- workers and stats ------------------------------------------------------------------

    @doc_of(Client.workers)
    async def workers(self) -> list[WorkerInfo]:
        return await self._run(self._workers_op())

    @doc_of(Client.working)
    async def working(self) -> list[WorkerInfo]:
        return await self._run(self._working_op())

    @doc_of(Client.heartbeats)
    async def heartbeats(self) -> dict[str, str]:
        return await self._run(self._heartbeats_op())

    @doc_of(Client.info)
    async def info(self) -> dict[str, Any]:
        return await self._run(self._info_op(redis_id(self.redis)))

    # -- the failed list (spec §10) ---------------------------------------------------------

    @doc_of(Client.failed_count)
    async def failed_count(self) -> int:
        return await self._run(self.failed_ops.count())

    @doc_of(Client.failed)
    async def failed(self, start: int = 0, count: int = 1) -> list[Optional[dict[str, Any]]]:
        return await self._run(self.failed_ops.entries(start, count))

    @doc_of(Client.requeue)
    async def requeue(self, index: int, *,
                      if_entry: Optional[Callable[[Raw], bool]] = None) -> str:
        return await self._run(self.failed_ops.requeue(index, if_entry))

    @doc_of(Client.remove)
    async def remove(self, index: int) -> None:
        await self._run(self.failed_ops.remove(index))

    @doc_of(Client.requeue_all)
    async def requeue_all(self) -> int:
        return await self._run(self.failed_ops.requeue_all())

    @doc_of(Client.requeue_queue)
    async def requeue_queue(self, queue: str) -> int:
        return await self._run(self.failed_ops.requeue_queue(queue))

    @doc_of(Client.requeue_matching)
    async def requeue_matching(
        self,
        wanted: Optional[Callable[[dict[str, Any]], bool]] = None,
        *,
        batch_size: int = 500,
        progress: Optional[Progress] = None,
    ) -> int:
        return await self._run(self.failed_ops.requeue_matching(wanted, batch_size, progress))

    @doc_of(Client.clear_failed)
    async def clear_failed(self) -> int:
        return await self._run(self.failed_ops.clear())

    @doc_of(Client.clear_retried)
    async def clear_retried(self) -> int:
        return await self._run(self.failed_ops.clear_retried())
