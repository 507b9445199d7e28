"""node-resque's workers as they look in a shared Redis, for our prune (see :mod:`._prune`).

A node-resque worker writes neither Resque's heartbeat nor a Resque process title; it proves
itself alive with ``worker:ping:<name>``, rewritten every few seconds, and its worker key holds
a ``worker`` field that Ruby's and ours never have.
"""

from __future__ import annotations

import json
from typing import Any, Optional

__all__ = ["NODE_STUCK_AFTER", "node_held", "node_name", "node_worker_alive"]

# node-resque's Scheduler force-cleans a worker whose ping is older than its
# stuckWorkerTimeout, 60 minutes by default; a pinging worker is not judged dead sooner here
# (its pings stop while a job blocks its event loop, not only when it dies).
NODE_STUCK_AFTER = 3600.0


def node_name(worker_id: str) -> str:
    """node-resque's name of a worker: its id without the ``:queues`` (``host:pid``)."""
    return worker_id.rsplit(":", 1)[0]


def _ping_time(value: Optional[bytes]) -> Optional[float]:
    """The ``time`` (epoch seconds) of a node-resque ``worker:ping:<name>`` value, or None."""
    if value is None:
        return None
    try:
        ping = json.loads(value)
    except ValueError:
        return None
    seen = ping.get("time") if isinstance(ping, dict) else None
    if isinstance(seen, bool) or not isinstance(seen, (int, float)):
        return None
    return float(seen)


def node_held(value: bytes) -> Optional[tuple[str, dict[str, Any]]]:
    """``(queue, payload)`` of a worker key node-resque wrote (it has a ``worker`` field,
    which Ruby's and ours never have), else None."""
    try:
        held = json.loads(value)
    except ValueError:
        return None
    if not isinstance(held, dict) or "worker" not in held:
        return None
    queue, payload = held.get("queue"), held.get("payload")
    if not isinstance(queue, str) or not isinstance(payload, dict):
        return None
    return queue, payload


def node_worker_alive(ping: Optional[bytes], started: Optional[bytes], now: float,
                      prune_after: float) -> bool:
    """Whether a registered worker is a live node-resque one: its ping is younger than
    :data:`NODE_STUCK_AFTER` (or ``prune_after``, if longer); or there is no ping yet and its
    ``:started`` holds node-resque's epoch seconds, younger than ``prune_after`` (it registers
    an instant before its first ping)."""
    seen = _ping_time(ping)
    if seen is not None:
        return now - seen <= max(prune_after, NODE_STUCK_AFTER)
    text = started.decode("utf-8", "replace") if started is not None else ""
    return text.isdigit() and now - int(text) <= prune_after
