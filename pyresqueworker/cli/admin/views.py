"""What the ``pyresque`` commands show, read from Redis as JSON-ready rows.

Each function returns plain dicts with stable field names and the values as stored (time texts
as Ruby or the worker wrote them, epoch seconds, decoded payloads); the commands print them as
JSON or turn them into table rows. Nothing here writes to Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

from ...client._client import Client, WorkerInfo
from ...client._workflow_ops import BatchStatus, JobState
from ...client.failed_queue import FailureFilter, Raw, decode_entry
from ...jobs.activejob import job_class, recorded_enqueued_at
from ...protocol import wire

__all__ = [
    "batch_detail",
    "batch_row",
    "delayed_rows",
    "enqueued_at",
    "failure_detail",
    "failure_row",
    "find_failures",
    "info",
    "queue_is_known",
    "queue_rows",
    "text",
    "worker_rows",
]


def text(raw: Optional[Raw]) -> Optional[str]:
    """Bytes from Redis as text (invalid UTF-8 replaced), ``None`` stays ``None``."""
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", "replace")


def info(client: Client) -> dict[str, Any]:
    """``Resque.info`` plus the delayed count and the pauses."""
    data = client.info()
    return {
        "pending": data["pending"],
        "processed": data["processed"],
        "failed": data["failed"],
        "queues": data["queues"],
        "workers": data["workers"],
        "working": data["working"],
        "delayed": client.delayed_count(),
        "all_paused": client.all_paused(),
        "paused_queues": client.paused_queues(),
        "namespace": client.keys.ns,
        "servers": data["servers"],
        "environment": data["environment"],
    }


def enqueued_at(payload: Any) -> Optional[str]:
    """The enqueue time a payload records as text, if any (ActiveJob's ``enqueued_at``)."""
    value = recorded_enqueued_at(payload)
    return value if isinstance(value, str) else None


def queue_rows(client: Client, now: float) -> list[dict[str, Any]]:
    """Every queue with its size, pause and latency (age of its oldest job, where the job
    records when it was enqueued; ``None`` otherwise)."""
    names = client.queues()
    if not names:
        return []
    pipe = client.redis.pipeline(transaction=False)
    for name in names:
        pipe.llen(client.keys.queue(name))
        pipe.lindex(client.keys.queue(name), 0)
    replies = pipe.execute()
    paused = set(client.paused_queues())
    all_paused = client.all_paused()
    rows = []
    for n, name in enumerate(names):
        size, head = int(replies[2 * n]), replies[2 * n + 1]
        stamp = enqueued_at(_loads(head)) if head is not None else None
        moment = wire.parse_time(stamp) if stamp else None
        rows.append({
            "name": name,
            "size": size,
            "paused": name in paused,
            "all_paused": all_paused,
            "latency": round(max(0.0, now - moment), 3) if moment is not None else None,
            "oldest_enqueued_at": stamp,
        })
    return rows


def queue_is_known(client: Client, name: str) -> bool:
    """Whether ``name`` is a queue anyone uses: it has waiting jobs, it is in the ``queues``
    set, a registered worker watches it by name, or it is paused already. (A worker watching
    ``*`` only takes queues that exist, so it does not make every name known.)"""
    if name in client.queues() or name in client.paused_queues():
        return True
    return any(name in worker.queues for worker in client.workers())


def _loads(raw: Raw) -> Any:
    try:
        return wire.loads(raw)
    except wire.DecodeError:
        return None


def worker_rows(client: Client) -> list[dict[str, Any]]:
    """Every registered worker: identity, state, the job it runs, heartbeat, stats."""
    return [_worker_row(worker) for worker in client.workers()]


def _worker_row(worker: WorkerInfo) -> dict[str, Any]:
    job = None
    if worker.job is not None:
        payload = worker.job.get("payload")
        job = {
            "queue": worker.job.get("queue"),
            "class": job_class(payload),
            "run_at": worker.job.get("run_at"),
            "payload": payload,
        }
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": list(worker.queues),
        "state": worker.state,
        "started": worker.started,
        "heartbeat": worker.heartbeat,
        "processed": worker.processed,
        "failed": worker.failed,
        "job": job,
    }


def failure_row(index: int, raw: Raw) -> dict[str, Any]:
    """One failure entry as a list row; ``valid`` is false where resque-web shows
    "could not be parsed" (the text is then in ``raw``)."""
    entry = decode_entry(raw)
    if entry is None:
        return {"index": index, "valid": False, "failed_at": None, "retried_at": None,
                "queue": None, "class": None, "args": None, "exception": None, "error": None,
                "worker": None, "attempts": None, "raw": text(raw)}
    payload = entry.get("payload")
    return {
        "index": index,
        "valid": True,
        "failed_at": entry.get("failed_at"),
        "retried_at": entry.get("retried_at"),
        "queue": entry.get("queue"),
        "class": job_class(payload),
        "args": payload.get("args") if isinstance(payload, dict) else None,
        "exception": entry.get("exception"),
        "error": entry.get("error"),
        "worker": entry.get("worker"),
        "attempts": entry.get("attempts"),  # what our worker's retries add when they run out
        "raw": None,
    }


def failure_detail(index: int, raw: Raw) -> dict[str, Any]:
    """One failure entry in full (``failed show``)."""
    return {"index": index, "valid": decode_entry(raw) is not None, "entry": decode_entry(raw),
            "raw": text(raw)}


def find_failures(client: Client, wanted: FailureFilter, *, start: Optional[int],
                  count: int) -> tuple[list[dict[str, Any]], int]:
    """Up to ``count`` (0: all) failures ``wanted`` accepts, by ascending index, and the list's
    length. From index ``start`` onwards when given, else the newest ones (as ``tail``)."""
    total = client.failed_count()
    filtering = wanted != FailureFilter()
    scan: Iterator[tuple[int, Raw]] = client.failed_queue.scan(
        start or 0, total, reverse=start is None)
    rows = []
    for index, raw in scan:
        if filtering:
            entry = decode_entry(raw)
            if entry is None or not wanted(entry):
                continue
        rows.append(failure_row(index, raw))
        if count and len(rows) >= count:
            break
    rows.sort(key=lambda row: int(row["index"]))
    return rows, total


def delayed_rows(client: Client, limit: int, items: int) -> list[dict[str, Any]]:
    """The first ``limit`` delayed timestamps (0: all), each with its count and up to ``items``
    of its jobs (items that are not JSON objects are given as their text)."""
    timestamps = client.delayed.delayed_timestamps(0, limit or None)
    if not timestamps:
        return []
    pipe = client.redis.pipeline(transaction=False)
    for ts in timestamps:
        pipe.llen(client.keys.delayed(ts))
        # LRANGE 1 0 is empty: items=0 must not mean "all" (0 .. -1)
        pipe.lrange(client.keys.delayed(ts), 0 if items > 0 else 1, items - 1 if items > 0 else 0)
    replies = pipe.execute()
    rows = []
    for n, ts in enumerate(timestamps):
        raws = replies[2 * n + 1]
        decoded = [_loads(raw) for raw in raws]
        rows.append({
            "timestamp": ts,
            "time": wire.iso_utc(ts),
            "count": int(replies[2 * n]),
            "items": [value if isinstance(value, dict) else text(raw)
                      for value, raw in zip(decoded, raws)],
        })
    return rows


# -- batches --------------------------------------------------------------------------------

#: How a batch names a child batch among its members.
CHILD_PREFIX = "batch:"
# Members listed unfinished first, then those that went wrong.
_MEMBER_ORDER = {"pending": 0, "failed": 1, "canceled": 2, "succeeded": 3}


def _callback(callback: Optional[tuple[str, list[Any]]]) -> Optional[dict[str, Any]]:
    return None if callback is None else {"class": callback[0], "args": callback[1]}


def batch_row(status: BatchStatus) -> dict[str, Any]:
    """A batch's counts, times (epoch seconds) and callbacks (``batches``)."""
    finished = status.total - status.pending
    return {
        "id": status.id,
        "description": status.description,
        "created_at": status.created_at,
        "completed_at": status.completed_at,
        "complete": status.complete,
        "total": status.total,
        "pending": status.pending,
        "succeeded": status.succeeded,
        "failed": status.failed,
        "percent": 100 if status.total <= 0 else min(100, finished * 100 // status.total),
        "parent": status.parent,
        "queue": status.queue,
        "on_success": _callback(status.on_success),
        "on_complete": _callback(status.on_complete),
    }


def _member_row(member: str, state: str, jobs: dict[str, JobState]) -> dict[str, Any]:
    if member.startswith(CHILD_PREFIX):
        return {"member": member, "kind": "batch", "id": member[len(CHILD_PREFIX):],
                "state": state, "class": None, "queue": None, "job_state": None}
    job = jobs.get(member)
    return {"member": member, "kind": "job", "id": member, "state": state,
            "class": job.class_name if job else None, "queue": job.queue if job else None,
            "job_state": job.state if job else None}


def batch_detail(client: Client, batch_id: str, limit: int) -> Optional[dict[str, Any]]:
    """One batch (``batches ID``): :func:`batch_row`, its first ``limit`` members (0: all;
    unfinished first) and what it waits for, with each job's class and state now; ``None``
    when nothing knows of the batch (never made, or expired)."""
    status = client.batch_status(batch_id)
    if status is None:
        return None
    ordered = sorted(status.jobs.items(),
                     key=lambda item: (_MEMBER_ORDER.get(item[1], 4), item[0]))
    shown = ordered[:limit] if limit else ordered
    waiting = status.waiting_for[:limit] if limit else status.waiting_for
    wanted = {member for member, _ in shown} | set(waiting)
    jobs = client.job_states(sorted(m for m in wanted if not m.startswith(CHILD_PREFIX)))
    return {
        **batch_row(status),
        "members_total": len(ordered),
        "members": [_member_row(member, state, jobs) for member, state in shown],
        "waiting_total": len(status.waiting_for),
        "waiting_for": [_member_row(member, "pending", jobs) for member in waiting],
    }
