"""Resque's Ruby client API in Python: enqueue, inspect queues and workers, manage failures.

Everything written here is what Ruby Resque would write for the same call (spec §4, §9, §10,
§16), so Ruby code, resque-web and this package can share one Redis in any combination.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional

import redis
from redis import Redis

from . import wire
from .connection import connect, describe, pinned_to_namespace
from .failed_queue import FailedQueue, Raw
from .inspection import (
    WorkerInfo,
    as_text,
    is_pause_value,
    read_heartbeats,
    read_info,
    read_queue_names,
    read_workers,
)
from .registry import default_registry
from .resp import LuaScript
from .retry import Retry

if TYPE_CHECKING:
    from .delayed import DelayedQueue, When
    from .schedules import ScheduleStore
    from .unique import UniqueJobs

__all__ = ["Client", "NoClassError", "NoQueueError", "WorkerInfo"]

# Resque.push's two writes as one command (spec §4).
_PUSH = LuaScript(
    "redis.call('SADD', KEYS[1], ARGV[1]) return redis.call('RPUSH', KEYS[2], ARGV[2])"
)

#: The default ``queue_for``: the queue of a handler registered with ``@job`` in this process,
#: so ``enqueue("Jobs::Archive", ...)`` finds ``@job("Jobs::Archive", queue="files")``.
_REGISTERED_QUEUE = default_registry.queue_for


class NoQueueError(ValueError):
    """No queue was given and none could be inferred for the class (Ruby: ``NoQueueError``)."""


class NoClassError(ValueError):
    """A job without a class name (Ruby: ``NoClassError``)."""


class Client:
    """A Resque client on one Redis: the Python counterpart of Ruby's ``Resque`` module.

    ``redis``: a ``redis.Redis``, a ``redis.cluster.RedisCluster``, or a URL (the same as
    ``url=``; see :class:`~pyresqueworker.connection.ConnectionFactory` for the schemes).
    ``queue_for`` maps a class name to its default queue (Ruby's ``@queue``) for
    :meth:`enqueue` calls without ``queue=``; by default the queue of the handler registered
    with ``@job`` in this process (``None`` turns that off).
    """

    def __init__(
        self,
        redis: Optional[Redis | str] = None,
        *,
        url: Optional[str] = None,
        namespace: str = wire.DEFAULT_NAMESPACE,
        queue_for: Optional[Callable[[str], Optional[str]]] = _REGISTERED_QUEUE,
    ) -> None:
        if isinstance(redis, str):  # Client("redis://..."), as redis.Redis.from_url users write
            if url is not None:
                raise TypeError("pass the Redis URL once: Client(url) or Client(url=...)")
            redis, url = None, redis
        self._owns_connection = redis is None
        if redis is not None and not isinstance(redis, Redis) and hasattr(redis, "nodes_manager"):
            # A redis.cluster.RedisCluster: our keys share one slot (see pinned_to_namespace).
            redis, self._owns_connection = pinned_to_namespace(redis, namespace), True
        self.redis: Redis = connect(url) if redis is None else redis
        self.keys = wire.Keys(namespace)
        self.queue_for = queue_for
        self.failed_queue = FailedQueue(self.redis, self.keys)

    def __repr__(self) -> str:
        # describe() names host, port and db only: never a password.
        return f"Client(redis={describe(self.redis)!r}, namespace={self.keys.ns!r})"

    def close(self) -> None:
        """Close the connection pool if this client created it from a URL."""
        if self._owns_connection:
            self.redis.close()

    # -- enqueue (spec §4) ----------------------------------------------------------------

    def enqueue(self, class_name: str, *args: Any, queue: Optional[str] = None,
                pipeline: Optional[redis.client.Pipeline] = None,
                retry: Optional[Retry] = None, job_id: Optional[str] = None) -> str:
        """``Resque.enqueue``: push a job to ``queue`` or to the class's registered queue.

        Returns the encoded queue item. Raises :class:`NoQueueError` when no queue is given
        and ``queue_for`` knows none. ``pipeline``, ``retry``, ``job_id``: see
        :meth:`enqueue_to`.
        """
        queue = self.queue_or_raise(class_name, queue)
        return self.enqueue_to(queue, class_name, *args, pipeline=pipeline, retry=retry,
                               job_id=job_id)

    def queue_or_raise(self, class_name: str, queue: Optional[str]) -> str:
        """``queue``, else the class's registered queue; :class:`NoQueueError` if neither."""
        if queue is None:
            queue = self.queue_for(class_name) if self.queue_for is not None else None
            if not queue:
                raise NoQueueError(
                    f"Jobs must be placed onto a queue. No queue could be inferred for class "
                    f"{class_name!r}: pass queue=... or register the class with a queue"
                )
        return queue

    def enqueue_to(self, queue: str, class_name: str, *args: Any,
                   pipeline: Optional[redis.client.Pipeline] = None,
                   retry: Optional[Retry] = None, job_id: Optional[str] = None) -> str:
        """``Resque.enqueue_to``: ``SADD queues <q>`` then ``RPUSH queue:<q>``.

        Ruby sends the two as a pipeline; here they are one script call, which writes the same
        and is atomic and about twice as fast from Python. The item is byte-identical to
        Ruby's, so ``Resque.dequeue`` finds it.

        With ``pipeline`` (the caller's redis-py pipeline) the two writes are only queued on
        it: with ``transaction=True`` the job is enqueued atomically with the caller's own
        writes when the caller executes it, or not at all.

        ``retry`` overrides the handler's retry policy for this job (named backoffs only): it
        travels in the payload as a ``"retry"`` field, which Ruby workers ignore. ``job_id``
        is stored as the payload's ``"id"``, by which job history finds the job's runs.
        """
        self.validate(queue, class_name)
        item = wire.encode_job(class_name, args)
        extra: dict[str, Any] = {}
        if job_id is not None:
            extra["id"] = job_id
        if retry is not None:
            extra["retry"] = retry.to_json()
        item = wire.with_fields(item, extra)
        if pipeline is not None:
            pipeline.sadd(self.keys.queues, queue)
            pipeline.rpush(self.keys.queue(queue), item)
            return item
        _PUSH(self.redis, [self.keys.queues, self.keys.queue(queue)], [queue, item])
        return item

    def enqueue_many(
        self, queue: str, jobs: Iterable[tuple[str, Sequence[Any]]], *, batch: int = 1000,
        pipeline: Optional[redis.client.Pipeline] = None,
    ) -> int:
        """Push many ``(class_name, args)`` jobs, in order; returns how many were pushed.

        Each batch is one pipeline: one ``SADD`` and one variadic ``RPUSH`` of up to ``batch``
        items. A job that cannot be encoded raises before its batch is sent; earlier batches
        are already queued. With ``pipeline`` every batch is queued on the caller's pipeline
        (all or nothing with ``transaction=True``).
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.validate(queue, "-")
        queue_key = self.keys.queue(queue)
        pushed = 0
        iterator = iter(jobs)
        while True:
            chunk = list(itertools.islice(iterator, batch))
            if not chunk:
                return pushed
            items = []
            for class_name, args in chunk:
                self.validate(queue, class_name)
                items.append(wire.encode_job(class_name, args))
            pipe = pipeline if pipeline is not None else self.redis.pipeline(transaction=False)
            pipe.sadd(self.keys.queues, queue)
            pipe.rpush(queue_key, *items)
            if pipeline is None:
                pipe.execute()
            pushed += len(items)

    # -- delayed jobs (resque-scheduler's format; see pyresqueworker.delayed) -------------

    @property
    def delayed(self) -> DelayedQueue:
        """The delayed-job API: listing, ``scheduled_at``, ``is_delayed``, sizes."""
        from .delayed import DelayedQueue

        return DelayedQueue(self)

    @property
    def schedules(self) -> ScheduleStore:
        """Periodic (cron) schedules: add, list, enable, disable and delete runtime ones;
        the code-declared ones (published by running workers, or registered in this process
        with ``@job(cron=...)`` / ``periodic``) are listed and can be switched too."""
        from .schedules import ScheduleStore

        return ScheduleStore(self.redis, self.keys, declared=default_registry.periodic_schedules)

    def enqueue_at(self, when: When, class_name: str, *args: Any, queue: Optional[str] = None,
                   pipeline: Optional[redis.client.Pipeline] = None) -> Optional[int]:
        """Run ``class_name(*args)`` at ``when`` (aware datetime or epoch seconds), as
        resque-scheduler's ``Resque.enqueue_at``; returns the timestamp, or ``None`` if it was
        due already and went straight to its queue."""
        return self.delayed.enqueue_at(when, class_name, *args, queue=queue, pipeline=pipeline)

    def enqueue_in(self, seconds: float | timedelta, class_name: str, *args: Any,
                   queue: Optional[str] = None,
                   pipeline: Optional[redis.client.Pipeline] = None) -> Optional[int]:
        """``Resque.enqueue_in``: run the job ``seconds`` from now."""
        return self.delayed.enqueue_in(seconds, class_name, *args, queue=queue,
                                       pipeline=pipeline)

    # -- unique jobs (see pyresqueworker.unique) ------------------------------------------

    def enqueue_unique(self, class_name: str, *args: Any, queue: Optional[str] = None,
                       pipeline: Optional[redis.client.Pipeline] = None) -> bool:
        """Enqueue unless a job with this class and args is already queued or scheduled.

        Returns whether it was enqueued. The lock is released when a worker starts the job,
        or after 24 hours. ``pipeline``: queued on the caller's pipeline (returns True; the
        pipeline's result for it is 1 or 0).
        """
        return self._unique.enqueue(queue, class_name, args, pipeline=pipeline)

    def enqueue_unique_by_key(self, class_name: str, key: Any, *args: Any,
                              queue: Optional[str] = None,
                              pipeline: Optional[redis.client.Pipeline] = None) -> bool:
        """As :meth:`enqueue_unique`, unique by ``key`` (any JSON value) instead of the args."""
        return self._unique.enqueue(queue, class_name, args, by_key=key, keyed=True,
                                    pipeline=pipeline)

    def enqueue_unique_at(self, when: When, class_name: str, *args: Any,
                          queue: Optional[str] = None, key: Any = None,
                          pipeline: Optional[redis.client.Pipeline] = None) -> bool:
        """Schedule (resque-scheduler's format) unless one of its kind is queued or scheduled;
        unique by ``key`` when given, else by the args."""
        return self._unique.enqueue(queue, class_name, args, by_key=key, keyed=key is not None,
                                    when=when, pipeline=pipeline)

    def enqueue_unique_in(self, seconds: float | timedelta, class_name: str, *args: Any,
                          queue: Optional[str] = None, key: Any = None,
                          pipeline: Optional[redis.client.Pipeline] = None) -> bool:
        """:meth:`enqueue_unique_at` ``seconds`` from now."""
        delay = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        return self.enqueue_unique_at(self._unique.clock() + delay, class_name, *args,
                                      queue=queue, key=key, pipeline=pipeline)

    @property
    def _unique(self) -> UniqueJobs:
        from .unique import UniqueJobs

        return UniqueJobs(self)

    def remove_delayed(self, class_name: str, *args: Any, queue: Optional[str] = None) -> int:
        """``Resque.remove_delayed``: unschedule matching jobs; returns how many."""
        return self.delayed.remove_delayed(class_name, *args, queue=queue)

    def delayed_count(self) -> int:
        """``Resque.count_all_scheduled_jobs``."""
        return self.delayed.delayed_count()

    def dequeue(self, class_name: str, *args: Any, queue: str) -> int:
        """``Resque.dequeue`` / ``Job.destroy``: remove queued jobs; returns how many.

        With args, removes every item byte-equal to Ruby's encoding (``LREM 0``). Without
        args, removes every job of the class whatever its args, as Ruby does.
        """
        key = self.keys.queue(queue)
        if args:
            return int(self.redis.lrem(key, 0, wire.encode_job(class_name, args)))
        matching: set[Raw] = set()
        for raw in self.redis.lrange(key, 0, -1):
            try:
                payload = wire.loads(raw)
            except wire.DecodeError:
                continue
            if isinstance(payload, dict) and payload.get("class") == class_name:
                matching.add(raw)
        if not matching:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for raw in matching:
            pipe.lrem(key, 0, raw)  # type: ignore[arg-type]  # bytes are fine at runtime
        return sum(int(n) for n in pipe.execute())

    def enqueue_active_job(
        self,
        job_class: str,
        *args: Any,
        queue: str = "default",
        job_id: Optional[str] = None,
        priority: Optional[int] = None,
        locale: str = "en",
        timezone: Optional[str] = None,
        pipeline: Optional[redis.client.Pipeline] = None,
        **kwargs: Any,
    ) -> str:
        """Enqueue a job for Ruby ActiveJob's Resque adapter (spec §16); returns its job id.

        ``args``/``kwargs`` become ``perform(*args, **kwargs)`` arguments of ``job_class``
        (see :func:`activejob.serialize_arguments` for the Python types it accepts). The
        payload has Rails 7.1+'s shape (``enqueued_at`` with nanoseconds, ``scheduled_at``),
        which Rails 6.1 and 7.0 also run: they ignore the extra key. ``pipeline``: see
        :meth:`enqueue_to`.
        """
        from .activejob import JOB_WRAPPER, job_data, serialize_arguments

        if not job_class:
            raise NoClassError("an ActiveJob job needs a job class")
        job_id = job_id or str(uuid.uuid4())
        data = job_data(
            job_class,
            serialize_arguments(args, kwargs),
            queue_name=queue,
            job_id=job_id,
            priority=priority,
            locale=locale,
            timezone=timezone,
        )
        self.enqueue_to(queue, JOB_WRAPPER, data, pipeline=pipeline)
        return job_id

    @staticmethod
    def validate(queue: str, class_name: str) -> None:
        if not isinstance(queue, str) or not queue:
            raise NoQueueError("Jobs must be placed onto a queue (got an empty queue name)")
        if not isinstance(class_name, str) or not class_name:
            raise NoClassError("Jobs must be given a class.")

    # -- queues ---------------------------------------------------------------------------

    def size(self, queue: str) -> int:
        """Jobs waiting in ``queue`` (``LLEN``)."""
        return int(self.redis.llen(self.keys.queue(queue)))

    def peek_raw(self, queue: str, start: int = 0, count: int = 1) -> list[Raw]:
        """Items ``start .. start+count-1`` of ``queue`` exactly as stored."""
        if count <= 0:
            return []
        return list(self.redis.lrange(self.keys.queue(queue), start, start + count - 1))

    def peek(self, queue: str, start: int = 0, count: int = 1) -> list[dict[str, Any]]:
        """Decoded items ``start .. start+count-1`` of ``queue`` (``Resque.peek``).

        Raises :class:`wire.DecodeError` for an item that is not a JSON object, as Ruby does;
        use :meth:`peek_raw` to look at such items.
        """
        decoded = []
        for offset, raw in enumerate(self.peek_raw(queue, start, count)):
            value = wire.loads(raw)
            if not isinstance(value, dict):
                raise wire.DecodeError(f"item {start + offset} of {queue!r} is not a JSON object")
            decoded.append(value)
        return decoded

    def queues(self) -> list[str]:
        """Every queue, sorted: the ``queues`` set (Ruby's ``Resque.queues``, which
        ``Resque.enqueue`` fills) and any ``queue:<name>`` list, so jobs pushed by hand with
        ``RPUSH`` are seen too."""
        return read_queue_names(self.redis, self.keys)

    def remove_queue(self, queue: str) -> None:
        """``Resque.remove_queue``: one pipeline, ``SREM queues <q>`` and ``DEL queue:<q>``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.srem(self.keys.queues, queue)
        pipe.delete(self.keys.queue(queue))
        pipe.execute()

    # -- pausing ----------------------------------------------------------------------------

    def pause_queue(self, queue: str) -> None:
        """Stop this package's workers taking jobs from ``queue`` (Ruby workers ignore this)."""
        self.redis.sadd(self.keys.paused_queues, queue)

    def unpause_queue(self, queue: str) -> None:
        """Let workers take jobs from ``queue`` again."""
        self.redis.srem(self.keys.paused_queues, queue)

    def paused_queues(self) -> list[str]:
        """Queues paused with :meth:`pause_queue`, sorted."""
        return sorted(as_text(name) or "" for name in self.redis.smembers(self.keys.paused_queues))

    def pause_all(self) -> None:
        """Resque's global pause: every Ruby and Python worker stops taking jobs."""
        self.redis.set(self.keys.pause_all, "true")

    def unpause_all(self) -> None:
        """Lift the global pause."""
        self.redis.delete(self.keys.pause_all)

    def all_paused(self) -> bool:
        """Whether the global pause is on, read as Ruby's ``paused?`` does (strip, downcase)."""
        return is_pause_value(self.redis.get(self.keys.pause_all))

    # -- workers and stats (spec §7, §9; see pyresqueworker.inspection) ------------------

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker Ruby could parse (others are skipped), sorted by id."""
        return read_workers(self.redis, self.keys)

    def working(self) -> list[WorkerInfo]:
        """The workers whose ``worker:<id>`` key holds a job (``Resque.working``)."""
        return [worker for worker in self.workers() if worker.state == "working"]

    def heartbeats(self) -> dict[str, str]:
        """``workers:heartbeat`` as ``{worker id: time text}``, dead workers included."""
        return read_heartbeats(self.redis, self.keys)

    def info(self) -> dict[str, Any]:
        """The fields of ``Resque.info``: pending, processed, queues, workers, working, failed,
        servers and environment."""
        return read_info(self.redis, self.keys)

    # -- the failed list (spec §10), see failed_queue.py ------------------------------------

    def failed_count(self) -> int:
        """Entries in ``failed`` (``Resque::Failure.count``)."""
        return self.failed_queue.count()

    def failed(self, start: int = 0, count: int = 1) -> list[Optional[dict[str, Any]]]:
        """Failure entries ``start .. start+count-1``; ``None`` for one that does not decode."""
        return self.failed_queue.entries(start, count)

    def requeue(self, index: int, *, if_entry: Optional[Callable[[Raw], bool]] = None) -> str:
        """Retry failure ``index`` as resque-web does; returns the ``retried_at`` text.

        ``if_entry``: see :meth:`FailedQueue.requeue`."""
        return self.failed_queue.requeue(index, if_entry=if_entry)

    def remove(self, index: int) -> None:
        """Delete failure ``index`` as resque-web does."""
        self.failed_queue.remove(index)

    def requeue_all(self) -> int:
        """Retry every failure; returns how many were requeued."""
        return self.failed_queue.requeue_all()

    def requeue_queue(self, queue: str) -> int:
        """Retry every failure from ``queue``; returns how many were requeued."""
        return self.failed_queue.requeue_queue(queue)

    def requeue_matching(
        self,
        wanted: Optional[Callable[[dict[str, Any]], bool]] = None,
        *,
        batch_size: int = 500,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> int:
        """Retry the failures ``wanted`` accepts (all when ``None``; see
        :class:`~pyresqueworker.failed_queue.FailureFilter`) in batches of ``batch_size``,
        calling ``progress(examined, total)`` after each; returns how many were requeued."""
        return self.failed_queue.requeue_matching(wanted, batch_size=batch_size,
                                                  progress=progress)

    def clear_failed(self) -> int:
        """Drop the whole failed list; returns how many entries it held."""
        return self.failed_queue.clear()

    def clear_retried(self) -> int:
        """Drop every failure that was retried; returns how many."""
        return self.failed_queue.clear_retried()

