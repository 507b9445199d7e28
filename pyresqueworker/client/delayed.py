"""resque-scheduler's delayed jobs, written and read exactly as the Ruby gem does (spec §15).

:class:`DelayedQueue` wraps a :class:`~pyresqueworker.Client` and writes the three
structures resque-scheduler keeps for ``Resque.enqueue_at``: the list ``delayed:<ts>``, the
set ``timestamps:<item json>`` and the zset ``delayed_queue_schedule``. The bytes match Ruby's,
so ``Resque.delayed?``, ``Resque.remove_delayed`` and ``Resque.count_all_scheduled_jobs`` see
jobs scheduled from Python, and a Ruby or Python scheduler (:mod:`pyresqueworker.worker.scheduler`)
moves them to their queues when they fall due.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Callable, Optional, Protocol, Union, overload

from redis import Redis
from redis.client import Pipeline

from ..protocol import wire
from ..protocol.times import When
from ._commands import Op, call, cmd, run, send
from ._enqueue_ops import resolve_queue, schedule, validate
from ._trace_enqueue import push_traced

__all__ = [
    "PUSH_OR_SCHEDULE_LUA", "DelayedOps", "DelayedQueue", "When", "as_bytes", "epoch_seconds",
]


_MEMBER_PREFIX = b"delayed:"

#: A Lua function for scripts that push a job now or later: with ``ts == '0'`` Resque.push's
#: ``SADD queues`` + ``RPUSH queue:<q>``, else resque-scheduler's ``delayed_push``
#: (``RPUSH delayed:<ts>``, ``SADD timestamps:<item>``, ``ZADD delayed_queue_schedule``).
PUSH_OR_SCHEDULE_LUA = r"""
local function push_or_schedule(ts, item, queues, queue_key, queue_name, schedule, list_key,
                                stamps, member)
  if ts == '0' then
    redis.call('SADD', queues, queue_name)
    redis.call('RPUSH', queue_key, item)
  else
    redis.call('RPUSH', list_key, item)
    redis.call('SADD', stamps, member)
    redis.call('ZADD', schedule, ts, ts)
  end
end
"""


def epoch_seconds(when: When) -> int:
    """The moment as resque-scheduler keys it: ``Time#to_i``, whole epoch seconds, floored.

    A naive ``datetime`` is refused: Ruby's ``Time`` always has a zone, and guessing the local
    one here would schedule the job hours away on a UTC server.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                "a naive datetime is ambiguous: pass an aware one (tzinfo=timezone.utc) "
                "or epoch seconds"
            )
        return math.floor(when.timestamp())
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError(f"when must be an aware datetime or epoch seconds, got {when!r}")
    if not math.isfinite(when):
        raise ValueError(f"when must be a finite number of seconds, got {when!r}")
    return math.floor(when)


def as_bytes(value: object) -> bytes:
    """A Redis reply (bytes from our clients; str if the caller decodes replies) as bytes."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _timestamp_of(member: object) -> Optional[int]:
    """The ``<ts>`` of a ``delayed:<ts>`` member of a ``timestamps:`` set, or None."""
    member = as_bytes(member)
    if not member.startswith(_MEMBER_PREFIX):
        return None
    try:
        return int(member[len(_MEMBER_PREFIX):])
    except ValueError:
        return None


class QueueOwner(Protocol):
    """What the delayed operations use of their client: its keys and queue inference
    (:class:`~pyresqueworker.client._core.ClientCore`, typed here so this module does not
    import the clients built on it)."""

    keys: wire.Keys
    queue_for: Optional[Callable[[str], Optional[str]]]


class RedisOwner(QueueOwner, Protocol):
    """A :class:`QueueOwner` with its redis-py client (a :class:`~pyresqueworker.Client`)."""

    redis: Redis


class DelayedOps:
    """The delayed-job operations (see :mod:`pyresqueworker.client._commands`) for one namespace,
    run by :class:`DelayedQueue` here and by the asyncio client's twin."""

    def __init__(self, client: QueueOwner, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.keys = client.keys
        self.clock = clock

    def enqueue_at(self, when: When, class_name: str, args: Sequence[Any],
                   queue: Optional[str], piped: bool) -> Op[Optional[int]]:
        """See :meth:`DelayedQueue.enqueue_at`."""
        timestamp = epoch_seconds(when)
        queue = self.queue(class_name, queue)
        if timestamp <= math.floor(self.clock()):
            yield from push_traced(self.keys, queue, class_name, args,
                                   wire.encode_job(class_name, args), piped)
            return None
        yield from schedule(self.keys, timestamp,
                            wire.encode_delayed_item(class_name, args, queue))
        return timestamp

    def enqueue_in(self, seconds: Union[float, timedelta], class_name: str, args: Sequence[Any],
                   queue: Optional[str], piped: bool) -> Op[Optional[int]]:
        """See :meth:`DelayedQueue.enqueue_in`."""
        delay = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        return self.enqueue_at(self.clock() + delay, class_name, args, queue, piped)

    def remove_delayed(self, class_name: str, args: Sequence[Any], queue: Optional[str],
                       piped: bool) -> Op[Optional[int]]:
        """See :meth:`DelayedQueue.remove_delayed`."""
        item = wire.encode_delayed_item(class_name, args, self.queue(class_name, queue))
        set_key = self.keys.timestamps(item)
        members = sorted(as_bytes(m) for m in (yield from call("SMEMBERS", set_key)))
        removals = []
        for member in members:
            removals += [cmd("LREM", self.keys.ns.encode() + member, 0, item),
                         cmd("SREM", set_key, member)]
        replies = (yield from send(*removals, write=True)) if removals else []
        if piped:
            return None
        return sum(int(count) for count in replies[0::2])

    def scheduled_at(self, class_name: str, args: Sequence[Any],
                     queue: Optional[str]) -> Op[list[int]]:
        """See :meth:`DelayedQueue.scheduled_at`."""
        item = wire.encode_delayed_item(class_name, args, self.queue(class_name, queue))
        found = (_timestamp_of(m) for m in (yield from call("SMEMBERS",
                                                             self.keys.timestamps(item))))
        return sorted(ts for ts in found if ts is not None)

    def delayed_count(self) -> Op[int]:
        """See :meth:`DelayedQueue.delayed_count`."""
        timestamps = yield from call("ZRANGE", self.keys.delayed_schedule, 0, -1)
        if not timestamps:
            return 0
        sizes = yield from send(*(cmd("LLEN", self.keys.ns.encode() + b"delayed:" + as_bytes(ts))
                                  for ts in timestamps))
        return sum(int(n) for n in sizes)

    def delayed_timestamps(self, start: int, count: Optional[int]) -> Op[list[int]]:
        """See :meth:`DelayedQueue.delayed_timestamps`."""
        if count is not None and count <= 0:
            return []
        stop = -1 if count is None else start + count - 1
        found = yield from call("ZRANGE", self.keys.delayed_schedule, start, stop)
        return [int(as_bytes(ts)) for ts in found]

    def delayed_at(self, timestamp: When, start: int,
                   count: Optional[int]) -> Op[list[dict[str, Any]]]:
        """See :meth:`DelayedQueue.delayed_at`."""
        if count is not None and count <= 0:
            return []
        stop = -1 if count is None else start + count - 1
        key = self.keys.delayed(epoch_seconds(timestamp))
        decoded = []
        for raw in (yield from call("LRANGE", key, start, stop)):
            value = wire.loads(raw)
            if not isinstance(value, dict):
                raise wire.DecodeError(f"an item of {key!r} is not a JSON object")
            decoded.append(value)
        return decoded

    def delayed_size(self, timestamp: When) -> Op[int]:
        """See :meth:`DelayedQueue.delayed_size`."""
        return int((yield from call("LLEN", self.keys.delayed(epoch_seconds(timestamp)))))

    def queue(self, class_name: str, queue: Optional[str]) -> str:
        """The explicit queue, else the class's registered one (Ruby's ``queue_from_class``)."""
        queue = resolve_queue(self.client.queue_for, class_name, queue)
        validate(queue, class_name)
        return queue


class DelayedQueue:
    """Delayed jobs on a client's Redis and namespace, in resque-scheduler's format.

    ``clock`` (epoch seconds) decides whether a moment is already past; tests inject one.
    Every write method takes ``pipeline=``: a redis-py pipeline of the caller's on which the
    commands are queued and not executed, so with ``transaction=True`` the schedule is atomic
    with the caller's own writes.
    """

    def __init__(self, client: RedisOwner, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.redis = client.redis
        self.keys = client.keys
        self.ops = DelayedOps(client, clock=clock)

    @property
    def clock(self) -> Callable[[], float]:
        return self.ops.clock

    # -- writing (spec §15.1) -------------------------------------------------------------

    def enqueue_at(
        self,
        when: When,
        class_name: str,
        *args: Any,
        queue: Optional[str] = None,
        pipeline: Optional[Pipeline] = None,
    ) -> Optional[int]:
        """``Resque.enqueue_at_with_queue``: run ``class_name(*args)`` on ``queue`` at ``when``.

        ``queue`` defaults to the client's ``queue_for(class_name)``. Returns the timestamp the
        job was filed under, or ``None`` when ``when`` is not in the future: then the job is
        pushed to its queue at once (``SADD queues`` + ``RPUSH queue:<q>``), as Ruby does.
        Raises :class:`~pyresqueworker.NoQueueError` /
        :class:`~pyresqueworker.NoClassError` as ``Resque.enqueue`` does.
        """
        op = self.ops.enqueue_at(when, class_name, args, queue, pipeline is not None)
        return run(self.redis, op, pipeline)

    def enqueue_in(
        self,
        seconds: Union[float, timedelta],
        class_name: str,
        *args: Any,
        queue: Optional[str] = None,
        pipeline: Optional[Pipeline] = None,
    ) -> Optional[int]:
        """``Resque.enqueue_in_with_queue``: :meth:`enqueue_at` ``seconds`` from now."""
        op = self.ops.enqueue_in(seconds, class_name, args, queue, pipeline is not None)
        return run(self.redis, op, pipeline)

    # -- removing (spec §15.2) ------------------------------------------------------------

    @overload
    def remove_delayed(
        self, class_name: str, *args: Any, queue: Optional[str] = ..., pipeline: None = ...
    ) -> int: ...

    @overload
    def remove_delayed(
        self, class_name: str, *args: Any, queue: Optional[str] = ..., pipeline: Pipeline
    ) -> None: ...

    def remove_delayed(
        self,
        class_name: str,
        *args: Any,
        queue: Optional[str] = None,
        pipeline: Optional[Pipeline] = None,
    ) -> Optional[int]:
        """``Resque.remove_delayed``: drop every scheduled copy of this exact job.

        As Ruby: ``SMEMBERS timestamps:<item>``, then per timestamp ``LREM delayed:<ts> 0
        <item>`` and ``SREM``. Returns how many items were removed. With ``pipeline=`` the
        ``SMEMBERS`` is read now and the removals are queued, so the counts are the ``LREM``
        replies in the pipeline's results and this returns ``None``. Emptied timestamps stay
        in the schedule until a scheduler cleans them up, as with Ruby.
        """
        op = self.ops.remove_delayed(class_name, args, queue, pipeline is not None)
        return run(self.redis, op, pipeline)

    # -- reading (spec §15.2) -------------------------------------------------------------

    def scheduled_at(self, class_name: str, *args: Any, queue: Optional[str] = None) -> list[int]:
        """``Resque.scheduled_at``: the timestamps this exact job is scheduled at, sorted."""
        return run(self.redis, self.ops.scheduled_at(class_name, args, queue))

    def is_delayed(self, class_name: str, *args: Any, queue: Optional[str] = None) -> bool:
        """``Resque.delayed?``: whether this exact job is scheduled at all."""
        return bool(self.scheduled_at(class_name, *args, queue=queue))

    def delayed_count(self) -> int:
        """``Resque.count_all_scheduled_jobs``: the sum of ``LLEN delayed:<ts>``."""
        return run(self.redis, self.ops.delayed_count())

    def delayed_timestamps(self, start: int = 0, count: Optional[int] = None) -> list[int]:
        """``Resque.delayed_queue_peek``: scheduled timestamps, oldest first.

        ``count=None`` lists all from ``start``.
        """
        return run(self.redis, self.ops.delayed_timestamps(start, count))

    def delayed_at(
        self, timestamp: When, start: int = 0, count: Optional[int] = None
    ) -> list[dict[str, Any]]:
        """``Resque.delayed_timestamp_peek``: the decoded items filed under ``timestamp``.

        Raises :class:`~pyresqueworker.protocol.wire.DecodeError`
        for an item that is not a JSON object.
        """
        return run(self.redis, self.ops.delayed_at(timestamp, start, count))

    def delayed_size(self, timestamp: When) -> int:
        """``Resque.delayed_timestamp_size``: items filed under ``timestamp``."""
        return run(self.redis, self.ops.delayed_size(timestamp))
