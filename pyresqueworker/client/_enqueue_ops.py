"""What enqueueing sends to Redis, once for the blocking and the asyncio client (spec §4, §15).

Each function here is an operation of :mod:`pyresqueworker.client._commands`: it builds Ruby's bytes
and yields the commands; :class:`~pyresqueworker.Client` and
:class:`~pyresqueworker.AsyncClient` only run them. ``piped`` says the commands go
onto a caller's pipeline (queued, not executed), which changes what some of them return.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional

from ..protocol import wire
from ..protocol._resp import LuaScript
from ._commands import Batch, Op, ScriptCall, call, cmd, send

__all__ = [
    "NoClassError", "NoQueueError", "dequeue", "enqueue_many", "push", "resolve_queue",
    "schedule", "validate",
]

# Resque.push's two writes as one command (spec §4).
_PUSH = LuaScript(
    "redis.call('SADD', KEYS[1], ARGV[1]) return redis.call('RPUSH', KEYS[2], ARGV[2])"
)


_NO_FIELDS: Mapping[str, str] = {}


class NoQueueError(ValueError):
    """No queue was given and none could be inferred for the class (Ruby: ``NoQueueError``)."""


class NoClassError(ValueError):
    """A job without a class name (Ruby: ``NoClassError``)."""


def validate(queue: str, class_name: str) -> None:
    """Raise as ``Resque.validate`` does for an empty queue or class name."""
    if not isinstance(queue, str) or not queue:
        raise NoQueueError("Jobs must be placed onto a queue (got an empty queue name)")
    if not isinstance(class_name, str) or not class_name:
        raise NoClassError("Jobs must be given a class.")


def resolve_queue(queue_for: Optional[Callable[[str], Optional[str]]], class_name: str,
                  queue: Optional[str]) -> str:
    """``queue``, else ``queue_for(class_name)``; :class:`NoQueueError` if neither."""
    if queue is None:
        queue = queue_for(class_name) if queue_for is not None else None
        if not queue:
            raise NoQueueError(
                f"Jobs must be placed onto a queue. No queue could be inferred for class "
                f"{class_name!r}: pass queue=... or register the class with a queue"
            )
    return queue


def push(keys: wire.Keys, queue: str, item: str, piped: bool) -> Op[None]:
    """``Resque.push``: ``SADD queues <q>`` and ``RPUSH queue:<q> <item>``.

    Alone, one script call (the same writes, atomic, one round trip); on a caller's pipeline
    the two plain commands, as Ruby sends them."""
    if piped:
        yield from send(cmd("SADD", keys.queues, queue), cmd("RPUSH", keys.queue(queue), item),
                        write=True)
    else:
        yield Batch([ScriptCall(_PUSH, [keys.queues, keys.queue(queue)], [queue, item])],
                    write=True)


def enqueue_many(keys: wire.Keys, queue: str, jobs: Iterable[tuple[str, Sequence[Any]]],
                 batch: int, fields: Mapping[str, str] = _NO_FIELDS) -> Op[int]:
    """Push ``(class_name, args)`` jobs in order, ``batch`` per pipeline (``SADD`` and one
    variadic ``RPUSH``); returns how many. ``fields`` are added to every job (the trace
    context, see :mod:`pyresqueworker.client._trace_enqueue`)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    validate(queue, "-")
    pushed = 0
    iterator = iter(jobs)
    while True:
        chunk = list(itertools.islice(iterator, batch))
        if not chunk:
            return pushed
        items = []
        for class_name, args in chunk:
            validate(queue, class_name)
            items.append(wire.with_fields(wire.encode_job(class_name, args), fields))
        yield from send(cmd("SADD", keys.queues, queue), cmd("RPUSH", keys.queue(queue), *items),
                        write=True)
        pushed += len(items)


def schedule(keys: wire.Keys, timestamp: int, item: str) -> Op[None]:
    """resque-scheduler's ``delayed_push`` for an encoded delayed item.

    Ruby sends the three commands separately; a MULTI writes the same keys and values and
    never leaves a list entry that the schedule zset does not point at."""
    yield from send(
        cmd("RPUSH", keys.delayed(timestamp), item),
        cmd("SADD", keys.timestamps(item), keys.delayed_member(timestamp)),
        cmd("ZADD", keys.delayed_schedule, timestamp, str(timestamp)),
        transaction=True, write=True,
    )


def dequeue(keys: wire.Keys, queue: str, class_name: str, args: Sequence[Any]) -> Op[int]:
    """``Resque.dequeue``: with args, ``LREM 0`` of Ruby's exact encoding; without, every job
    of the class whatever its args. Returns how many were removed."""
    key = keys.queue(queue)
    if args:
        return int((yield from call("LREM", key, 0, wire.encode_job(class_name, args))))
    matching: dict[Any, None] = {}  # each distinct item once: LREM 0 removes all its copies
    for raw in (yield from call("LRANGE", key, 0, -1)):
        try:
            payload = wire.loads(raw)
        except wire.DecodeError:
            continue
        if isinstance(payload, dict) and payload.get("class") == class_name:
            matching[raw] = None
    if not matching:
        return 0
    counts = yield from send(*(cmd("LREM", key, 0, raw) for raw in matching))
    return sum(int(n) for n in counts)
