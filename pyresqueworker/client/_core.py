"""What :class:`~pyresqueworker.Client` and
:class:`~pyresqueworker.AsyncClient` share: settings, validation, and every
operation of theirs built once (see :mod:`pyresqueworker.client._commands`).

Each ``*_op`` method returns an operation; the blocking client runs it with
:func:`~pyresqueworker.client._commands.run`, the asyncio one awaits
:func:`~pyresqueworker.client._commands.arun`, so both send the same commands with the same bytes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, Callable, Optional, TypeVar

from ..jobs.activejob import JOB_WRAPPER, job_data, serialize_arguments
from ..jobs.registry import default_registry
from ..jobs.retry import Retry
from ..protocol import wire
from ._commands import Op, call, cmd, send
from ._enqueue_ops import NoClassError, dequeue, resolve_queue, validate
from ._failed_ops import FailedOps, Raw
from ._trace_enqueue import enqueue_many_traced, produce_tracked, push_traced
from ._unique import UniqueJobs
from ._workflow_ops import (
    BatchStatus,
    JobState,
    batch_status_op,
    batches_op,
    enqueue_op,
    job_states_op,
    status_op,
    wait_op,
)
from .delayed import DelayedOps, When, epoch_seconds
from .inspection import (
    WorkerInfo,
    as_text,
    heartbeats_op,
    info_op,
    is_pause_value,
    queue_names_op,
    workers_op,
)
from .refs import DependsOn, JobRef, Tracked, new_job_id

__all__ = ["REGISTERED_QUEUE", "ClientCore", "doc_of"]

#: The default ``queue_for``: the queue of a handler registered with ``@job`` in this process,
#: so ``enqueue("Jobs::Archive", ...)`` finds ``@job("Jobs::Archive", queue="files")``.
REGISTERED_QUEUE = default_registry.queue_for

F = TypeVar("F", bound=Callable[..., Any])


def doc_of(blocking: Callable[..., Any]) -> Callable[[F], F]:
    """Give an ``AsyncClient`` twin the blocking method's documentation (one text for both)."""
    def decorate(method: F) -> F:
        method.__doc__ = blocking.__doc__
        return method
    return decorate


class ClientCore:
    """The namespace, ``queue_for`` and the operations of a Resque client.

    ``clock`` (epoch seconds) is "now" for delayed, unique and ActiveJob enqueues: whether a
    moment is past, ``enqueue_in``'s start, ``enqueued_at``. Tests may replace it.
    """

    def __init__(self, namespace: str,
                 queue_for: Optional[Callable[[str], Optional[str]]]) -> None:
        self.keys = wire.Keys(namespace)
        self.queue_for = queue_for
        self.clock: Callable[[], float] = time.time
        self._failed_ops = FailedOps(self.keys)

    def queue_or_raise(self, class_name: str, queue: Optional[str]) -> str:
        """``queue``, else the class's registered queue; :class:`NoQueueError` if neither."""
        return resolve_queue(self.queue_for, class_name, queue)

    @staticmethod
    def validate(queue: str, class_name: str) -> None:
        """Raise :class:`NoQueueError` / :class:`NoClassError` for an empty queue or class."""
        validate(queue, class_name)

    # -- enqueue ----------------------------------------------------------------------------

    def job_ref(self, job_id: str, tracked: bool = False,
                scheduled_for: Optional[int] = None) -> JobRef:
        """A :class:`JobRef` that waits through this client."""
        return JobRef(job_id, self, tracked, scheduled_for)  # type: ignore[arg-type]

    def registered_result_ttl(self, class_name: str) -> Optional[int]:
        """``@job(..., result_ttl=)`` of the class's handler registered in this process."""
        handler = default_registry.find(class_name)
        return handler.result_ttl if handler is not None else None

    def _tracking(self, class_name: str, job_id: Optional[str], result_ttl: Optional[int],
                  depends_on: Optional[DependsOn], on_dependency_failure: str
                  ) -> Optional[Tracked]:
        """How the job is tracked, or None for a job nobody follows (it costs nothing)."""
        ttl = result_ttl if result_ttl is not None else self.registered_result_ttl(class_name)
        if not ttl and not depends_on:
            return None
        return Tracked(job_id, ttl, "", depends_on, on_dependency_failure)

    def _enqueue_to_op(self, queue: str, class_name: str, args: Sequence[Any],
                       retry: Optional[Retry], job_id: Optional[str], piped: bool,
                       track: Optional[Tracked] = None) -> Op[JobRef]:
        """Push the job; its ref."""
        validate(queue, class_name)
        if track is not None:
            fields = track.fields(retry.to_json() if retry is not None else None)
            item = wire.with_fields(wire.encode_job(class_name, args), fields)
            yield from produce_tracked(self.keys, queue, class_name, args, item, track.spec)
            return self.job_ref(track.job_id, tracked=True)
        extra: dict[str, Any] = {}
        if job_id is not None:
            extra["id"] = job_id
        if retry is not None:
            extra["retry"] = retry.to_json()
        item = wire.with_fields(wire.encode_job(class_name, args), extra)
        yield from push_traced(self.keys, queue, class_name, args, item, piped)
        return self.job_ref(job_id or new_job_id())

    def _enqueue_op(self, class_name: str, args: Sequence[Any], queue: Optional[str],
                    retry: Optional[Retry], job_id: Optional[str], piped: bool,
                    track: Optional[Tracked] = None) -> Op[JobRef]:
        queue = self.queue_or_raise(class_name, queue)
        return self._enqueue_to_op(queue, class_name, args, retry, job_id, piped, track)

    def _enqueue_many_op(self, queue: str, jobs: Iterable[tuple[str, Sequence[Any]]],
                         batch: int) -> Op[int]:
        return enqueue_many_traced(self.keys, queue, jobs, batch)

    def _enqueue_at_op(self, when: When, class_name: str, args: Sequence[Any],
                       queue: Optional[str], piped: bool, track: Optional[Tracked] = None
                       ) -> Op[JobRef]:
        """Schedule the job; its ref (``scheduled_for``: its time, or None if it was due and
        went straight to its queue)."""
        if track is None:
            at = yield from self._delayed().enqueue_at(when, class_name, args, queue, piped)
            return self.job_ref(new_job_id(), scheduled_for=at)
        if track.depends_on:
            raise ValueError("a delayed job cannot wait for dependencies too")
        queue = self.queue_or_raise(class_name, queue)
        timestamp = epoch_seconds(when)
        if timestamp <= int(self.clock()):
            return (yield from self._enqueue_to_op(queue, class_name, args, None, None, piped,
                                                   track))
        validate(queue, class_name)
        delayed = wire.with_fields(wire.encode_delayed_item(class_name, args, queue),
                                   track.fields())
        item = wire.with_fields(wire.encode_job(class_name, args), track.fields())
        yield from enqueue_op(self.keys, track.spec(queue, item, class_name, timestamp), delayed)
        return self.job_ref(track.job_id, True, timestamp)

    def _enqueue_in_op(self, seconds: float | timedelta, class_name: str, args: Sequence[Any],
                       queue: Optional[str], piped: bool, track: Optional[Tracked] = None
                       ) -> Op[JobRef]:
        delay = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        return self._enqueue_at_op(self.clock() + delay, class_name, args, queue, piped, track)

    # -- results, dependencies, batches (see pyresqueworker.client._workflow_ops) ----------

    def _status_op(self, job_id: str) -> Op[str]:
        return status_op(self.keys, str(job_id))

    def _wait_op(self, job_id: str, timeout: Optional[float], block: float
                 ) -> Op[dict[str, str]]:
        return wait_op(self.keys, str(job_id), timeout, block)

    def _batch_status_op(self, batch_id: str) -> Op[Optional[BatchStatus]]:
        return batch_status_op(self.keys, batch_id)

    def _batches_op(self, limit: int) -> Op[list[BatchStatus]]:
        return batches_op(self.keys, limit)

    def _job_states_op(self, job_ids: Sequence[str]) -> Op[dict[str, JobState]]:
        return job_states_op(self.keys, [str(job_id) for job_id in job_ids])

    def _unique_op(self, class_name: str, args: tuple[Any, ...], queue: Optional[str], *,
                   key: Any = None, keyed: bool = False, when: Optional[When] = None,
                   delay: Optional[float | timedelta] = None) -> Op[Optional[JobRef]]:
        """Enqueue unless one of its kind is queued or scheduled: its ref, or None."""
        unique = UniqueJobs(self, clock=self.clock)
        if delay is not None:
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
            when = unique.clock() + seconds
        enqueued = yield from unique.op(queue, class_name, args, by_key=key, keyed=keyed,
                                        when=when)
        return self.job_ref(new_job_id()) if enqueued else None

    def _active_job_op(self, job_class: str, args: Sequence[Any], kwargs: dict[str, Any],
                       queue: str, job_id: Optional[str], priority: Optional[int], locale: str,
                       timezone: Optional[str], piped: bool) -> Op[JobRef]:
        if not job_class:
            raise NoClassError("an ActiveJob job needs a job class")
        job_id = job_id or str(uuid.uuid4())
        data = job_data(job_class, serialize_arguments(tuple(args), kwargs), queue_name=queue,
                        job_id=job_id, priority=priority, locale=locale, timezone=timezone,
                        enqueued_at=self.clock())
        yield from self._enqueue_to_op(queue, JOB_WRAPPER, [data], None, None, piped)
        return self.job_ref(job_id)

    def _delayed(self) -> DelayedOps:
        return DelayedOps(self, clock=self.clock)

    def _remove_delayed_op(self, class_name: str, args: Sequence[Any],
                           queue: Optional[str]) -> Op[Optional[int]]:
        return self._delayed().remove_delayed(class_name, args, queue, piped=False)

    def _delayed_count_op(self) -> Op[int]:
        return self._delayed().delayed_count()

    def _dequeue_op(self, class_name: str, args: Sequence[Any], queue: str) -> Op[int]:
        return dequeue(self.keys, queue, class_name, args)

    # -- queues and pausing ---------------------------------------------------------------

    def _size_op(self, queue: str) -> Op[int]:
        return int((yield from call("LLEN", self.keys.queue(queue))))

    def _peek_raw_op(self, queue: str, start: int, count: int) -> Op[list[Raw]]:
        if count <= 0:
            return []
        return list((yield from call("LRANGE", self.keys.queue(queue), start,
                                     start + count - 1)))

    def _peek_op(self, queue: str, start: int, count: int) -> Op[list[dict[str, Any]]]:
        decoded = []
        for offset, raw in enumerate((yield from self._peek_raw_op(queue, start, count))):
            value = wire.loads(raw)
            if not isinstance(value, dict):
                raise wire.DecodeError(f"item {start + offset} of {queue!r} is not a JSON object")
            decoded.append(value)
        return decoded

    def _queues_op(self) -> Op[list[str]]:
        return queue_names_op(self.keys)

    def _remove_queue_op(self, queue: str) -> Op[None]:
        yield from send(cmd("SREM", self.keys.queues, queue), cmd("DEL", self.keys.queue(queue)))

    def _command_op(self, *args: Any) -> Op[None]:
        yield from call(*args)

    def _paused_queues_op(self) -> Op[list[str]]:
        names = yield from call("SMEMBERS", self.keys.paused_queues)
        return sorted(as_text(name) or "" for name in names)

    def _all_paused_op(self) -> Op[bool]:
        return is_pause_value((yield from call("GET", self.keys.pause_all)))

    # -- workers, stats and failures ------------------------------------------------------

    def _workers_op(self) -> Op[list[WorkerInfo]]:
        return workers_op(self.keys)

    def _working_op(self) -> Op[list[WorkerInfo]]:
        workers = yield from workers_op(self.keys)
        return [worker for worker in workers if worker.state == "working"]

    def _heartbeats_op(self) -> Op[dict[str, str]]:
        return heartbeats_op(self.keys)

    def _info_op(self, server: str) -> Op[dict[str, Any]]:
        return info_op(self.keys, server)

    @property
    def failed_ops(self) -> FailedOps:
        """The failed-list operations for this namespace."""
        return self._failed_ops
