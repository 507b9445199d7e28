"""A queue's depth and the age of its oldest job, read the same way by the metrics exporter
and the dashboard's time series."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import redis

from ..jobs.activejob import recorded_enqueued_at
from ..protocol import wire

__all__ = ["HEAD_LIMIT", "HEAD_SCRIPT", "enqueued_at", "read_heads"]

HEAD_LIMIT = 64 * 1024  # a head job larger than this is not sent back to find its age

# The depth and, when it is small enough to be worth sending, the oldest job of one queue
# (KEYS[1] the queue, ARGV[1] the size limit): {depth, head or false}.
HEAD_SCRIPT = """
local depth = redis.call('LLEN', KEYS[1])
if depth == 0 then return {0, false} end
local head = redis.call('LINDEX', KEYS[1], 0)
if string.len(head) > tonumber(ARGV[1]) then return {depth, false} end
return {depth, head}
"""


def enqueued_at(raw: Any) -> Optional[float]:
    """When the job ``raw`` (bytes or text) was enqueued, in epoch seconds, if its payload says.

    ActiveJob's ``args[0].enqueued_at``, or a top-level ``enqueued_at`` (epoch seconds or a
    time string). Plain Resque payloads (``{"class","args"}``) carry no time: ``None``.
    """
    if not isinstance(raw, (bytes, str)):
        return None
    try:
        payload = wire.loads(raw if isinstance(raw, bytes) else raw.encode())
    except (wire.DecodeError, RecursionError):
        return None
    value = recorded_enqueued_at(payload)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return wire.parse_time(value)


def read_heads(conn: redis.Redis, keys: wire.Keys, queues: Sequence[str], now: float,
               limit: int = HEAD_LIMIT) -> list[tuple[str, int, Optional[float]]]:
    """Each queue's ``(name, depth, age of its oldest job in seconds)`` in one pipelined round
    trip; the age is None when unknown (an empty queue, no enqueue time, a head over
    ``limit``). A key that is not a list (WRONGTYPE) is left out."""
    with conn.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.eval(HEAD_SCRIPT, 1, keys.queue(queue), limit)
        replies: list[Any] = pipe.execute(raise_on_error=False) if queues else []
    found: list[tuple[str, int, Optional[float]]] = []
    for queue, reply in zip(queues, replies):
        if isinstance(reply, list) and len(reply) == 2:
            at = enqueued_at(reply[1])
            found.append((queue, int(reply[0]), None if at is None else max(0.0, now - at)))
    return found
