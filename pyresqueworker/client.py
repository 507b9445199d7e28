"""Resque's Ruby client API in Python: enqueue, inspect queues and workers, manage failures.

Everything written here is what Ruby Resque would write for the same call (spec §4, §9, §10,
§16), so Ruby code, resque-web and this package can share one Redis in any combination.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional

import redis
from redis import Redis

from . import wire
from .connection import connect, describe
from .failed_queue import FailedQueue, Raw, decode_entry
from .resp import LuaScript

if TYPE_CHECKING:
    from .delayed import DelayedQueue, When

__all__ = ["Client", "NoClassError", "NoQueueError", "WorkerInfo"]

# Resque.push's two writes as one command (spec §4).
_PUSH = LuaScript(
    "redis.call('SADD', KEYS[1], ARGV[1]) return redis.call('RPUSH', KEYS[2], ARGV[2])"
)

# Worker ids per pipelined MGET round when reading ``workers``; each id costs four keys.
_WORKER_BATCH = 250


class NoQueueError(ValueError):
    """No queue was given and none could be inferred for the class (Ruby: ``NoQueueError``)."""


class NoClassError(ValueError):
    """A job without a class name (Ruby: ``NoClassError``)."""


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker as ``Resque.workers`` / resque-web show it.

    ``pid`` is Ruby's ``to_i`` of the id's pid part (``4242-1`` gives 4242). ``job`` is the
    decoded ``worker:<id>`` value, ``None`` when idle or undecodable; ``state`` is ``working``
    whenever that key holds a non-empty value.
    """

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    started: Optional[str]
    heartbeat: Optional[str]
    job: Optional[dict[str, Any]]
    processed: int
    failed: int
    state: str


def _ruby_to_i(value: Optional[Raw]) -> int:
    """Ruby's ``String#to_i``: leading (signed) digits, 0 for anything else or ``nil``."""
    if value is None:
        return 0
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def _text(value: Optional[Raw]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")


def _parse_worker_id(raw: Raw) -> Optional[wire.WorkerId]:
    """The id as Ruby's ``Worker.find`` splits it, or ``None`` where Ruby would crash."""
    try:
        worker_id = wire.WorkerId.parse(raw if isinstance(raw, str) else raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    # Ruby's String#split drops trailing empty fields: "h:1:," has no queues and
    # Worker.new would raise NoQueueError.
    queues = list(worker_id.queues)
    while queues and not queues[-1]:
        queues.pop()
    if not queues:
        return None
    return wire.WorkerId(worker_id.host, worker_id.pid, tuple(queues))


class Client:
    """A Resque client on one Redis: the Python counterpart of Ruby's ``Resque`` module.

    ``queue_for`` maps a class name to its default queue (Ruby's ``@queue``) for
    :meth:`enqueue` calls without ``queue=``.
    """

    def __init__(
        self,
        redis: Optional[Redis] = None,
        *,
        url: Optional[str] = None,
        namespace: str = wire.DEFAULT_NAMESPACE,
        queue_for: Optional[Callable[[str], Optional[str]]] = None,
    ) -> None:
        self._owns_connection = redis is None
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
                pipeline: Optional[redis.client.Pipeline] = None) -> str:
        """``Resque.enqueue``: push a job to ``queue`` or to the class's registered queue.

        Returns the encoded queue item. Raises :class:`NoQueueError` when no queue is given
        and ``queue_for`` knows none. ``pipeline``: see :meth:`enqueue_to`.
        """
        if queue is None:
            queue = self.queue_for(class_name) if self.queue_for is not None else None
            if not queue:
                raise NoQueueError(
                    f"Jobs must be placed onto a queue. No queue could be inferred for class "
                    f"{class_name!r}: pass queue=... or register the class with a queue"
                )
        return self.enqueue_to(queue, class_name, *args, pipeline=pipeline)

    def enqueue_to(self, queue: str, class_name: str, *args: Any,
                   pipeline: Optional[redis.client.Pipeline] = None) -> str:
        """``Resque.enqueue_to``: ``SADD queues <q>`` then ``RPUSH queue:<q>``.

        Ruby sends the two as a pipeline; here they are one script call, which writes the same
        and is atomic and about twice as fast from Python. The item is byte-identical to
        Ruby's, so ``Resque.dequeue`` finds it.

        With ``pipeline`` (the caller's redis-py pipeline) the two writes are only queued on
        it: with ``transaction=True`` the job is enqueued atomically with the caller's own
        writes when the caller executes it, or not at all.
        """
        self.validate(queue, class_name)
        item = wire.encode_job(class_name, args)
        if pipeline is not None:
            pipeline.sadd(self.keys.queues, queue)
            pipeline.rpush(self.keys.queue(queue), item)
            return item
        _PUSH(self.redis, [self.keys.queues, self.keys.queue(queue)], [queue, item])
        return item

    def enqueue_many(
        self, queue: str, jobs: Iterable[tuple[str, Sequence[Any]]], *, batch: int = 1000
    ) -> int:
        """Push many ``(class_name, args)`` jobs, in order; returns how many were pushed.

        Each batch is one pipeline: one ``SADD`` and one variadic ``RPUSH`` of up to ``batch``
        items. A job that cannot be encoded raises before its batch is sent; earlier batches
        are already queued.
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
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(self.keys.queues, queue)
            pipe.rpush(queue_key, *items)
            pipe.execute()
            pushed += len(items)

    # -- delayed jobs (resque-scheduler's format; see pyresqueworker.delayed) -------------

    @property
    def delayed(self) -> DelayedQueue:
        """The delayed-job API: listing, ``scheduled_at``, ``is_delayed``, sizes."""
        from .delayed import DelayedQueue

        return DelayedQueue(self)

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
        **kwargs: Any,
    ) -> str:
        """Enqueue a job for Ruby ActiveJob's Resque adapter (spec §16); returns its job id.

        ``args``/``kwargs`` become ``perform(*args, **kwargs)`` arguments of ``job_class``
        (see :func:`activejob.serialize_arguments` for the Python types it accepts). The
        payload has Rails 7.1+'s shape (``enqueued_at`` with nanoseconds, ``scheduled_at``),
        which Rails 6.1 and 7.0 also run: they ignore the extra key.
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
        self.enqueue_to(queue, JOB_WRAPPER, data)
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
        """Known queue names (the ``queues`` set), sorted as resque-web lists them."""
        return sorted(_text(name) or "" for name in self.redis.smembers(self.keys.queues))

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
        return sorted(_text(name) or "" for name in self.redis.smembers(self.keys.paused_queues))

    def pause_all(self) -> None:
        """Resque's global pause: every Ruby and Python worker stops taking jobs."""
        self.redis.set(self.keys.pause_all, "true")

    def unpause_all(self) -> None:
        """Lift the global pause."""
        self.redis.delete(self.keys.pause_all)

    def all_paused(self) -> bool:
        """Whether the global pause is on, read as Ruby's ``paused?`` does (strip, downcase)."""
        value = _text(self.redis.get(self.keys.pause_all))
        return value is not None and value.strip().lower() == "true"

    # -- workers and stats (spec §7, §9) ----------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker Ruby could parse (others are skipped), sorted by id.

        Two round trips whatever the number of workers: ``SMEMBERS``, then one pipeline of
        ``MGET``s and an ``HMGET`` of the heartbeats.
        """
        ids = []
        for raw in self.redis.smembers(self.keys.workers):
            parsed = _parse_worker_id(raw)
            if parsed is not None:
                ids.append((_text(raw) or "", parsed))
        if not ids:
            return []
        ids.sort(key=lambda pair: pair[0])
        pipe = self.redis.pipeline(transaction=False)
        for offset in range(0, len(ids), _WORKER_BATCH):
            keys: list[str] = []
            for text, _ in ids[offset : offset + _WORKER_BATCH]:
                keys += [
                    self.keys.worker(text),
                    self.keys.worker_started(text),
                    self.keys.stat("processed", text),
                    self.keys.stat("failed", text),
                ]
            pipe.mget(keys)
        pipe.hmget(self.keys.heartbeats, [text for text, _ in ids])
        *batches, heartbeats = pipe.execute()
        values = [value for chunk in batches for value in chunk]
        result = []
        for n, (text, parsed) in enumerate(ids):
            job_raw, started, processed, failed = values[4 * n : 4 * n + 4]
            result.append(
                WorkerInfo(
                    id=text,
                    host=parsed.host,
                    pid=_ruby_to_i(parsed.pid),
                    queues=parsed.queues,
                    started=_text(started),
                    heartbeat=_text(heartbeats[n]),
                    job=decode_entry(job_raw) if job_raw else None,
                    processed=_ruby_to_i(processed),
                    failed=_ruby_to_i(failed),
                    state="working" if job_raw else "idle",
                )
            )
        return result

    def working(self) -> list[WorkerInfo]:
        """The workers whose ``worker:<id>`` key holds a job (``Resque.working``)."""
        return [worker for worker in self.workers() if worker.state == "working"]

    def heartbeats(self) -> dict[str, str]:
        """``workers:heartbeat`` as ``{worker id: time text}``, dead workers included."""
        return {
            _text(field) or "": _text(value) or ""
            for field, value in self.redis.hgetall(self.keys.heartbeats).items()
        }

    def info(self) -> dict[str, Any]:
        """The fields of ``Resque.info``: pending, processed, queues, workers, working, failed,
        servers and environment."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.queues)
        pipe.get(self.keys.stat("processed"))
        pipe.llen(self.keys.failed)
        queue_names, processed, failed = pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        for name in queue_names:
            pipe.llen(self.keys.queue(_text(name) or ""))
        sizes = pipe.execute()
        workers = self.workers()
        return {
            "pending": sum(int(size) for size in sizes),
            "processed": _ruby_to_i(processed),
            "queues": len(queue_names),
            "workers": len(workers),
            "working": sum(1 for worker in workers if worker.state == "working"),
            "failed": int(failed),
            "servers": [self._redis_id()],
            "environment": os.environ.get("RAILS_ENV")
            or os.environ.get("RACK_ENV")
            or "development",
        }

    def _redis_id(self) -> str:
        # redis-rb's Client#id: "redis://<host:port or socket path>/<db>", never credentials.
        kwargs = self.redis.connection_pool.connection_kwargs
        host, port = kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
        location = kwargs.get("path") or f"{host}:{port}"
        return f"redis://{location}/{kwargs.get('db', 0)}"

    # -- the failed list (spec §10), see failed_queue.py ------------------------------------

    def failed_count(self) -> int:
        """Entries in ``failed`` (``Resque::Failure.count``)."""
        return self.failed_queue.count()

    def failed(self, start: int = 0, count: int = 1) -> list[Optional[dict[str, Any]]]:
        """Failure entries ``start .. start+count-1``; ``None`` for one that does not decode."""
        return self.failed_queue.entries(start, count)

    def requeue(self, index: int) -> str:
        """Retry failure ``index`` as resque-web does; returns the ``retried_at`` text."""
        return self.failed_queue.requeue(index)

    def remove(self, index: int) -> None:
        """Delete failure ``index`` as resque-web does."""
        self.failed_queue.remove(index)

    def requeue_all(self) -> int:
        """Retry every failure; returns how many were requeued."""
        return self.failed_queue.requeue_all()

    def requeue_queue(self, queue: str) -> int:
        """Retry every failure from ``queue``; returns how many were requeued."""
        return self.failed_queue.requeue_queue(queue)

    def clear_failed(self) -> int:
        """Drop the whole failed list; returns how many entries it held."""
        return self.failed_queue.clear()

    def clear_retried(self) -> int:
        """Drop every failure that was retried; returns how many."""
        return self.failed_queue.clear_retried()

