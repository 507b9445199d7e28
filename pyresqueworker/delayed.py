"""resque-scheduler's delayed jobs, written and read exactly as the Ruby gem does (spec §15).

:class:`DelayedQueue` wraps a :class:`~pyresqueworker.client.Client` and writes the three
structures resque-scheduler keeps for ``Resque.enqueue_at``: the list ``delayed:<ts>``, the
set ``timestamps:<item json>`` and the zset ``delayed_queue_schedule``. The bytes match Ruby's,
so ``Resque.delayed?``, ``Resque.remove_delayed`` and ``Resque.count_all_scheduled_jobs`` see
jobs scheduled from Python, and a Ruby or Python scheduler (:mod:`pyresqueworker.scheduler`)
moves them to their queues when they fall due.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, overload

from redis.client import Pipeline

from . import wire

if TYPE_CHECKING:
    from .client import Client

__all__ = ["PUSH_OR_SCHEDULE_LUA", "DelayedQueue", "When", "as_bytes", "epoch_seconds"]

#: A moment: an aware ``datetime`` or epoch seconds.
When = Union[datetime, int, float]

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


class DelayedQueue:
    """Delayed jobs on a client's Redis and namespace, in resque-scheduler's format.

    ``clock`` (epoch seconds) decides whether a moment is already past; tests inject one.
    Every write method takes ``pipeline=``: a redis-py pipeline of the caller's on which the
    commands are queued and not executed, so with ``transaction=True`` the schedule is atomic
    with the caller's own writes.
    """

    def __init__(self, client: Client, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.redis = client.redis
        self.keys = client.keys
        self.clock = clock

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
        Raises :class:`~pyresqueworker.client.NoQueueError` /
        :class:`~pyresqueworker.client.NoClassError` as ``Resque.enqueue`` does.
        """
        timestamp = epoch_seconds(when)
        queue = self._queue(class_name, queue)
        if timestamp <= math.floor(self.clock()):
            self._push_now(queue, class_name, args, pipeline)
            return None
        item = wire.encode_delayed_item(class_name, args, queue)
        # Ruby sends these three commands separately; a MULTI writes the same keys and values
        # and never leaves a list entry that the schedule zset does not point at.
        pipe = pipeline if pipeline is not None else self.redis.pipeline(transaction=True)
        pipe.rpush(self.keys.delayed(timestamp), item)
        pipe.sadd(self.keys.timestamps(item), self.keys.delayed_member(timestamp))
        pipe.zadd(self.keys.delayed_schedule, {str(timestamp): timestamp})
        if pipeline is None:
            pipe.execute()
        return timestamp

    def enqueue_in(
        self,
        seconds: Union[float, timedelta],
        class_name: str,
        *args: Any,
        queue: Optional[str] = None,
        pipeline: Optional[Pipeline] = None,
    ) -> Optional[int]:
        """``Resque.enqueue_in_with_queue``: :meth:`enqueue_at` ``seconds`` from now."""
        delay = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        return self.enqueue_at(
            self.clock() + delay, class_name, *args, queue=queue, pipeline=pipeline
        )

    def _push_now(
        self, queue: str, class_name: str, args: Sequence[Any], pipeline: Optional[Pipeline]
    ) -> None:
        if pipeline is None:
            self.client.enqueue_to(queue, class_name, *args)
            return
        self.client.validate(queue, class_name)
        pipeline.sadd(self.keys.queues, queue)
        pipeline.rpush(self.keys.queue(queue), wire.encode_job(class_name, args))

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
        item = wire.encode_delayed_item(class_name, args, self._queue(class_name, queue))
        set_key = self.keys.timestamps(item)
        members = sorted(as_bytes(m) for m in self.redis.smembers(set_key))
        pipe = pipeline if pipeline is not None else self.redis.pipeline(transaction=False)
        for member in members:
            pipe.lrem(self.keys.ns.encode() + member, 0, item)
            pipe.srem(set_key, member)
        if pipeline is not None:
            return None
        if not members:
            return 0
        replies = pipe.execute()
        return sum(int(count) for count in replies[0::2])

    # -- reading (spec §15.2) -------------------------------------------------------------

    def scheduled_at(self, class_name: str, *args: Any, queue: Optional[str] = None) -> list[int]:
        """``Resque.scheduled_at``: the timestamps this exact job is scheduled at, sorted."""
        item = wire.encode_delayed_item(class_name, args, self._queue(class_name, queue))
        found = (_timestamp_of(m) for m in self.redis.smembers(self.keys.timestamps(item)))
        return sorted(ts for ts in found if ts is not None)

    def is_delayed(self, class_name: str, *args: Any, queue: Optional[str] = None) -> bool:
        """``Resque.delayed?``: whether this exact job is scheduled at all."""
        return bool(self.scheduled_at(class_name, *args, queue=queue))

    def delayed_count(self) -> int:
        """``Resque.count_all_scheduled_jobs``: the sum of ``LLEN delayed:<ts>``."""
        timestamps = self.redis.zrange(self.keys.delayed_schedule, 0, -1)
        if not timestamps:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for ts in timestamps:
            pipe.llen(self.keys.ns.encode() + b"delayed:" + as_bytes(ts))
        return sum(int(n) for n in pipe.execute())

    def delayed_timestamps(self, start: int = 0, count: Optional[int] = None) -> list[int]:
        """``Resque.delayed_queue_peek``: scheduled timestamps, oldest first.

        ``count=None`` lists all from ``start``.
        """
        if count is not None and count <= 0:
            return []
        stop = -1 if count is None else start + count - 1
        found = self.redis.zrange(self.keys.delayed_schedule, start, stop)
        return [int(as_bytes(ts)) for ts in found]

    def delayed_at(
        self, timestamp: When, start: int = 0, count: Optional[int] = None
    ) -> list[dict[str, Any]]:
        """``Resque.delayed_timestamp_peek``: the decoded items filed under ``timestamp``.

        Raises :class:`~pyresqueworker.wire.DecodeError` for an item that is not a JSON object.
        """
        if count is not None and count <= 0:
            return []
        stop = -1 if count is None else start + count - 1
        key = self.keys.delayed(epoch_seconds(timestamp))
        decoded = []
        for raw in self.redis.lrange(key, start, stop):
            value = wire.loads(raw)
            if not isinstance(value, dict):
                raise wire.DecodeError(f"an item of {key!r} is not a JSON object")
            decoded.append(value)
        return decoded

    def delayed_size(self, timestamp: When) -> int:
        """``Resque.delayed_timestamp_size``: items filed under ``timestamp``."""
        return int(self.redis.llen(self.keys.delayed(epoch_seconds(timestamp))))

    # -- helpers --------------------------------------------------------------------------

    def _queue(self, class_name: str, queue: Optional[str]) -> str:
        """The explicit queue, else the class's registered one (Ruby's ``queue_from_class``)."""
        from .client import NoQueueError

        if queue is None and self.client.queue_for is not None:
            queue = self.client.queue_for(class_name)
        if not queue:
            raise NoQueueError(
                f"Jobs must be placed onto a queue. No queue could be inferred for class "
                f"{class_name!r}: pass queue=... or register the class with a queue"
            )
        self.client.validate(queue, class_name)
        return queue
