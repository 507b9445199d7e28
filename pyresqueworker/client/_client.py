"""Resque's Ruby client API in Python: enqueue, inspect queues and workers, manage failures.

Everything written here is what Ruby Resque would write for the same call (spec §4, §9, §10,
§16), so Ruby code, resque-web and this package can share one Redis in any combination.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional

import redis
from redis import Redis

from ..jobs.registry import default_registry
from ..jobs.retry import Retry
from ..protocol.connection import connect, describe, pinned_to_namespace
from ..protocol.urls import resolve_namespace
from ._commands import Op, T, run
from ._core import REGISTERED_QUEUE, ClientCore
from ._enqueue_ops import NoClassError, NoQueueError
from ._workflow_ops import BatchStatus, JobState, block_seconds, outcome
from .failed_queue import FailedQueue, Raw
from .inspection import WorkerInfo, redis_id
from .refs import Batch, Callback, DependsOn, JobRef

if TYPE_CHECKING:
    from ..jobs.schedules import ScheduleStore
    from .delayed import DelayedQueue, When

__all__ = ["Client", "NoClassError", "NoQueueError", "WorkerInfo"]


class Client(ClientCore):
    """A Resque client on one Redis: the Python counterpart of Ruby's ``Resque`` module.

    ``redis``: a ``redis.Redis``, a ``redis.cluster.RedisCluster``, or a URL (the same as
    ``url=``; see :class:`~pyresqueworker.protocol.connection.ConnectionFactory` for the schemes).
    Without one, the URL comes from the environment as for every entry point (``PYRESQUE_REDIS``,
    ``RESQUE_REDIS_URL``, ``REDIS_URL``, first set wins), and so does a namespace not given
    (``PYRESQUE_NAMESPACE``, else ``resque:``).
    ``queue_for`` maps a class name to its default queue (Ruby's ``@queue``) for
    :meth:`enqueue` calls without ``queue=``; by default the queue of the handler registered
    with ``@job`` in this process (``None`` turns that off).
    """

    def __init__(self, redis: Optional[Redis | str] = None, *, url: Optional[str] = None,
                 namespace: Optional[str] = None,
                 queue_for: Optional[Callable[[str], Optional[str]]] = REGISTERED_QUEUE) -> None:
        namespace = resolve_namespace(namespace)
        if isinstance(redis, str):  # Client("redis://..."), as redis.Redis.from_url users write
            if url is not None:
                raise TypeError("pass the Redis URL once: Client(url) or Client(url=...)")
            redis, url = None, redis
        self._owns_connection = redis is None
        if redis is not None and not isinstance(redis, Redis) and hasattr(redis, "nodes_manager"):
            # A redis.cluster.RedisCluster: our keys share one slot (see pinned_to_namespace).
            redis, self._owns_connection = pinned_to_namespace(redis, namespace), True
        self.redis: Redis = connect(url) if redis is None else redis
        super().__init__(namespace, queue_for)
        self.failed_queue = FailedQueue(self.redis, self.keys)

    def _run(self, op: Op[T], pipeline: Optional[redis.client.Pipeline] = None) -> T:
        return run(self.redis, op, pipeline)

    def __repr__(self) -> str:
        # describe() names host, port and db only: never a password.
        return f"Client(redis={describe(self.redis)!r}, namespace={self.keys.ns!r})"

    def close(self) -> None:
        """Close the connection pool if this client created it from a URL."""
        if self._owns_connection:
            self.redis.close()
            # A pool passed to redis.Redis (as connect() does) is not closed with it.
            self.redis.connection_pool.disconnect()

    # -- enqueue (spec §4) ----------------------------------------------------------------

    def enqueue(self, class_name: str, *args: Any, queue: Optional[str] = None,
                pipeline: Optional[redis.client.Pipeline] = None,
                retry: Optional[Retry] = None, job_id: Optional[str] = None,
                result_ttl: Optional[int] = None, depends_on: Optional[DependsOn] = None,
                on_dependency_failure: str = "cancel") -> JobRef:
        """``Resque.enqueue``: push a job to ``queue`` or to the class's registered queue.

        Returns its :class:`JobRef`. Raises :class:`NoQueueError` when no queue is given
        and ``queue_for`` knows none. The other options: see :meth:`enqueue_to`.
        """
        track = self._tracking(class_name, job_id, result_ttl, depends_on, on_dependency_failure)
        return self._run(self._enqueue_op(class_name, args, queue, retry, job_id,
                                          pipeline is not None, track), pipeline)

    def enqueue_to(self, queue: str, class_name: str, *args: Any,
                   pipeline: Optional[redis.client.Pipeline] = None,
                   retry: Optional[Retry] = None, job_id: Optional[str] = None,
                   result_ttl: Optional[int] = None, depends_on: Optional[DependsOn] = None,
                   on_dependency_failure: str = "cancel") -> JobRef:
        """``Resque.enqueue_to``: ``SADD queues <q>`` then ``RPUSH queue:<q>``; its :class:`JobRef`.

        Ruby sends the two as a pipeline; here they are one script call, which writes the same
        and is atomic and about twice as fast from Python. The item is byte-identical to
        Ruby's, so ``Resque.dequeue`` finds it.

        With ``pipeline`` (the caller's redis-py pipeline) the two writes are only queued on
        it: with ``transaction=True`` the job is enqueued atomically with the caller's own
        writes when the caller executes it, or not at all.

        ``retry`` overrides the handler's retry policy for this job (named backoffs only): it
        travels in the payload as a ``"retry"`` field, which Ruby workers ignore. ``job_id``
        is stored as the payload's ``"id"``, by which job history finds the job's runs.

        ``result_ttl`` keeps the handler's return value that many seconds (default: the
        handler's ``@job(result_ttl=)``); ``depends_on`` (refs or ids of tracked jobs) holds
        the job back until every one of them succeeded, and cancels it if one fails for good
        (``on_dependency_failure="run"``: runs it anyway). Either makes the job tracked: see
        ``docs/workflows.md``.
        """
        track = self._tracking(class_name, job_id, result_ttl, depends_on, on_dependency_failure)
        op = self._enqueue_to_op(queue, class_name, args, retry, job_id, pipeline is not None,
                                 track)
        return self._run(op, pipeline)

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
        return self._run(self._enqueue_many_op(queue, jobs, batch), pipeline)

    # -- delayed jobs (resque-scheduler's format; see pyresqueworker.client.delayed) -------------

    @property
    def delayed(self) -> DelayedQueue:
        """The delayed-job API: listing, ``scheduled_at``, ``is_delayed``, sizes."""
        from .delayed import DelayedQueue

        return DelayedQueue(self, clock=self.clock)

    @property
    def schedules(self) -> ScheduleStore:
        """Periodic (cron) schedules: add, list, enable, disable and delete runtime ones;
        the code-declared ones (published by running workers, or registered in this process
        with ``@job(cron=...)`` / ``periodic``) are listed and can be switched too."""
        from ..jobs.schedules import ScheduleStore

        return ScheduleStore(self.redis, self.keys, declared=default_registry.periodic_schedules)

    def enqueue_at(self, when: When, class_name: str, *args: Any, queue: Optional[str] = None,
                   pipeline: Optional[redis.client.Pipeline] = None,
                   result_ttl: Optional[int] = None) -> JobRef:
        """Run ``class_name(*args)`` at ``when`` (aware datetime or epoch seconds), as
        resque-scheduler's ``Resque.enqueue_at``; the ref's ``scheduled_for`` is the timestamp,
        or ``None`` if it was due already and went straight to its queue."""
        track = self._tracking(class_name, None, result_ttl, None, "cancel")
        return self._run(self._enqueue_at_op(when, class_name, args, queue,
                                             pipeline is not None, track), pipeline)

    def enqueue_in(self, seconds: float | timedelta, class_name: str, *args: Any,
                   queue: Optional[str] = None,
                   pipeline: Optional[redis.client.Pipeline] = None,
                   result_ttl: Optional[int] = None) -> JobRef:
        """``Resque.enqueue_in``: run the job ``seconds`` from now."""
        track = self._tracking(class_name, None, result_ttl, None, "cancel")
        return self._run(self._enqueue_in_op(seconds, class_name, args, queue,
                                             pipeline is not None, track), pipeline)

    # -- results, dependencies, batches (docs/workflows.md) -------------------------------

    def result(self, job_id: str, timeout: Optional[float] = None) -> Any:
        """A tracked job's result, waiting up to ``timeout`` s: see :meth:`JobRef.result`."""
        block = block_seconds(self.redis.connection_pool.connection_kwargs.get("socket_timeout"))
        return outcome(str(job_id), self._run(self._wait_op(job_id, timeout, block)))

    def status(self, job_id: str) -> str:
        """A job's state: see :meth:`JobRef.status`."""
        return self._run(self._status_op(job_id))

    def batch(self, *, on_success: Optional[Callback] = None,
              on_complete: Optional[Callback] = None, queue: Optional[str] = None,
              description: str = "", result_ttl: Optional[int] = None) -> Batch:
        """A batch: ``with client.batch(on_success=("Notify", [42])) as b: b.enqueue_to(...)``,
        pushed when the block ends; ``on_success`` is enqueued once when every job succeeded,
        ``on_complete`` once when every job finished (see ``docs/workflows.md``)."""
        return Batch(self, self._run, on_success, on_complete, queue, description, result_ttl)

    def batch_status(self, batch_id: str) -> Optional[BatchStatus]:
        """Total, pending, succeeded and failed jobs of a batch, and each member's state."""
        return self._run(self._batch_status_op(batch_id))

    def batches(self, limit: int = 50) -> list[BatchStatus]:
        """The newest batches first."""
        return self._run(self._batches_op(limit))

    def job_states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        """Class, queue and state of tracked jobs (those whose records expired left out)."""
        return self._run(self._job_states_op(job_ids))

    # -- unique jobs (see pyresqueworker.client._unique) ------------------------------------------

    def enqueue_unique(self, class_name: str, *args: Any, queue: Optional[str] = None,
                       pipeline: Optional[redis.client.Pipeline] = None) -> Optional[JobRef]:
        """Enqueue unless a job with this class and args is already queued or scheduled.

        Its :class:`JobRef` if it was enqueued, else None. The lock is released when a worker
        starts the job, or after 24 hours. ``pipeline``: queued there (a ref; the pipeline's
        result for it is 1 or 0).
        """
        return self._run(self._unique_op(class_name, args, queue), pipeline)

    def enqueue_unique_by_key(self, class_name: str, key: Any, *args: Any,
                              queue: Optional[str] = None,
                              pipeline: Optional[redis.client.Pipeline] = None) -> Optional[JobRef]:
        """As :meth:`enqueue_unique`, unique by ``key`` (any JSON value) instead of the args."""
        return self._run(self._unique_op(class_name, args, queue, key=key, keyed=True), pipeline)

    def enqueue_unique_at(self, when: When, class_name: str, *args: Any,
                          queue: Optional[str] = None, key: Any = None,
                          pipeline: Optional[redis.client.Pipeline] = None) -> Optional[JobRef]:
        """Schedule (resque-scheduler's format) unless one of its kind is queued or scheduled;
        unique by ``key`` when given, else by the args."""
        op = self._unique_op(class_name, args, queue, key=key, keyed=key is not None, when=when)
        return self._run(op, pipeline)

    def enqueue_unique_in(self, seconds: float | timedelta, class_name: str, *args: Any,
                          queue: Optional[str] = None, key: Any = None,
                          pipeline: Optional[redis.client.Pipeline] = None) -> Optional[JobRef]:
        """:meth:`enqueue_unique_at` ``seconds`` from now."""
        op = self._unique_op(class_name, args, queue, key=key, keyed=key is not None,
                             delay=seconds)
        return self._run(op, pipeline)

    def remove_delayed(self, class_name: str, *args: Any, queue: Optional[str] = None) -> int:
        """``Resque.remove_delayed``: unschedule matching jobs; returns how many."""
        return self._run(self._remove_delayed_op(class_name, args, queue)) or 0

    def delayed_count(self) -> int:
        """``Resque.count_all_scheduled_jobs``."""
        return self._run(self._delayed_count_op())

    def dequeue(self, class_name: str, *args: Any, queue: str) -> int:
        """``Resque.dequeue`` / ``Job.destroy``: remove queued jobs; returns how many.

        With args, removes every item byte-equal to Ruby's encoding (``LREM 0``). Without
        args, removes every job of the class whatever its args, as Ruby does.
        """
        return self._run(self._dequeue_op(class_name, args, queue))

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
    ) -> JobRef:
        """Enqueue a job for Ruby ActiveJob's Resque adapter (spec §16); returns its job id.

        ``args``/``kwargs`` become ``perform(*args, **kwargs)`` arguments of ``job_class``
        (see :func:`activejob.serialize_arguments` for the Python types it accepts). The
        payload has Rails 7.1+'s shape (``enqueued_at`` with nanoseconds, ``scheduled_at``),
        which Rails 6.1 and 7.0 also run: they ignore the extra key. ``pipeline``: see
        :meth:`enqueue_to`.
        """
        return self._run(self._active_job_op(job_class, args, kwargs, queue, job_id, priority,
                                             locale, timezone, pipeline is not None), pipeline)

    # -- queues ---------------------------------------------------------------------------

    def size(self, queue: str) -> int:
        """Jobs waiting in ``queue`` (``LLEN``)."""
        return self._run(self._size_op(queue))

    def peek_raw(self, queue: str, start: int = 0, count: int = 1) -> list[Raw]:
        """Items ``start .. start+count-1`` of ``queue`` exactly as stored."""
        return self._run(self._peek_raw_op(queue, start, count))

    def peek(self, queue: str, start: int = 0, count: int = 1) -> list[dict[str, Any]]:
        """Decoded items ``start .. start+count-1`` of ``queue`` (``Resque.peek``).

        Raises :class:`wire.DecodeError` for an item that is not a JSON object, as Ruby does;
        use :meth:`peek_raw` to look at such items.
        """
        return self._run(self._peek_op(queue, start, count))

    def queues(self) -> list[str]:
        """Every queue, sorted: the ``queues`` set (Ruby's ``Resque.queues``, which
        ``Resque.enqueue`` fills) and any ``queue:<name>`` list, so jobs pushed by hand with
        ``RPUSH`` are seen too."""
        return self._run(self._queues_op())

    def remove_queue(self, queue: str) -> None:
        """``Resque.remove_queue``: one pipeline, ``SREM queues <q>`` and ``DEL queue:<q>``."""
        self._run(self._remove_queue_op(queue))

    # -- pausing ----------------------------------------------------------------------------

    def pause_queue(self, queue: str) -> None:
        """Stop this package's workers taking jobs from ``queue`` (Ruby workers ignore this)."""
        self._run(self._command_op("SADD", self.keys.paused_queues, queue))

    def unpause_queue(self, queue: str) -> None:
        """Let workers take jobs from ``queue`` again."""
        self._run(self._command_op("SREM", self.keys.paused_queues, queue))

    def paused_queues(self) -> list[str]:
        """Queues paused with :meth:`pause_queue`, sorted."""
        return self._run(self._paused_queues_op())

    def pause_all(self) -> None:
        """Resque's global pause: every Ruby and Python worker stops taking jobs."""
        self._run(self._command_op("SET", self.keys.pause_all, "true"))

    def unpause_all(self) -> None:
        """Lift the global pause."""
        self._run(self._command_op("DEL", self.keys.pause_all))

    def all_paused(self) -> bool:
        """Whether the global pause is on, read as Ruby's ``paused?`` does (strip, downcase)."""
        return self._run(self._all_paused_op())

    # -- workers and stats (spec §7, §9; see pyresqueworker.client.inspection) ------------------

    def workers(self) -> list[WorkerInfo]:
        """Every registered worker Ruby could parse (others are skipped), sorted by id."""
        return self._run(self._workers_op())

    def working(self) -> list[WorkerInfo]:
        """The workers whose ``worker:<id>`` key holds a job (``Resque.working``)."""
        return self._run(self._working_op())

    def heartbeats(self) -> dict[str, str]:
        """``workers:heartbeat`` as ``{worker id: time text}``, dead workers included."""
        return self._run(self._heartbeats_op())

    def info(self) -> dict[str, Any]:
        """The fields of ``Resque.info``: pending, processed, queues, workers, working, failed,
        servers and environment."""
        return self._run(self._info_op(redis_id(self.redis)))

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
        :class:`~pyresqueworker.client.failed_queue.FailureFilter`) in batches of ``batch_size``,
        calling ``progress(examined, total)`` after each; returns how many were requeued."""
        return self.failed_queue.requeue_matching(wanted, batch_size=batch_size,
                                                  progress=progress)

    def clear_failed(self) -> int:
        """Drop the whole failed list; returns how many entries it held."""
        return self.failed_queue.clear()

    def clear_retried(self) -> int:
        """Drop every failure that was retried; returns how many."""
        return self.failed_queue.clear_retried()

