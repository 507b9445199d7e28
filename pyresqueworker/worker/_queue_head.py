"""A queue's depth and the age of its oldest job, read the same way by the metrics exporter
and the dashboard's time series."""

from __future__ import annotations

from typing import Any, Optional

from ..jobs.activejob import recorded_enqueued_at
from ..protocol import wire

__all__ = ["HEAD_LIMIT", "HEAD_SCRIPT", "enqueued_at"]

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
