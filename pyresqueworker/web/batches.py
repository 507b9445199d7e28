"""What the batch pages show: every batch with its progress, and one batch in full.

A batch's members are job ids, or ``batch:<id>`` for a child batch; for a job member the page
adds what the job's own record says (its class, its state now: queued, running...), read in
one pipeline for the members on the page only. Plain values: the templates escape them.
"""

from __future__ import annotations

from typing import Any, Optional

from ..client._client import Client
from ..client._workflow_ops import BatchStatus, JobState
from .format import age_text, json_text, local_time
from .pages import pages

__all__ = [
    "BATCHES_LISTED", "MEMBERS_PER_PAGE", "WAITING_SHOWN", "batch_detail", "batch_list",
    "percent",
]

#: Batches the list shows, newest first.
BATCHES_LISTED = 100
#: Members shown per page of a batch (a batch may hold thousands).
MEMBERS_PER_PAGE = 100
#: Members of the "waiting for" list shown with their class.
WAITING_SHOWN = 50
CHILD_PREFIX = "batch:"
# Members listed unfinished first, then the ones that went wrong.
_ORDER = {"pending": 0, "failed": 1, "canceled": 2, "succeeded": 3}


def percent(status: BatchStatus) -> int:
    """Finished members as a whole percentage (an empty batch is done)."""
    if status.total <= 0:
        return 100
    return min(100, (status.total - status.pending) * 100 // status.total)


def _callback(callback: Optional[tuple[str, list[Any]]], enqueued: Optional[bool],
              reason: str) -> Optional[dict[str, Any]]:
    if callback is None:
        return None
    class_name, args = callback
    state = "waits for the batch" if enqueued is None else "enqueued" if enqueued else reason
    return {"class_name": class_name, "args": json_text(args), "state": state,
            "enqueued": bool(enqueued)}


def _summary(status: BatchStatus, now: float) -> dict[str, Any]:
    return {
        "id": status.id,
        "description": status.description,
        "created": local_time(status.created_at),
        "created_ago": age_text(now - status.created_at),
        "completed": local_time(status.completed_at),
        "took": age_text(None if status.completed_at is None
                         else status.completed_at - status.created_at),
        "percent": percent(status),
        "done": status.total - status.pending,
        "total": status.total,
        "pending": status.pending,
        "succeeded": status.succeeded,
        "failed": status.failed,
        "complete": status.complete,
        "parent": status.parent,
        "queue": status.queue,
    }


def batch_list(client: Client, now: float) -> dict[str, Any]:
    """The batches page: the newest batches with their counts and progress."""
    return {"batches": [_summary(status, now) for status in client.batches(BATCHES_LISTED)],
            "listed": BATCHES_LISTED}


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _member(member: str, state: str, records: dict[str, JobState]) -> dict[str, Any]:
    if member.startswith(CHILD_PREFIX):
        return {"member": member, "child": member[len(CHILD_PREFIX):], "state": state,
                "class_name": "", "queue": "", "job_state": "", "known": True}
    job = records.get(member)
    return {"member": member, "child": None, "state": state,
            "class_name": job.class_name if job else "", "queue": job.queue if job else "",
            "job_state": job.state if job else "", "known": job is not None}


def batch_detail(client: Client, batch_id: str, start: int,
                 now: float) -> Optional[dict[str, Any]]:
    """One batch: counts, callbacks, parent, a page of its members and what it waits for;
    None when nothing knows of it (never made, or expired)."""
    status = client.batch_status(batch_id)
    if status is None:
        return None
    ordered = sorted(status.jobs.items(), key=lambda item: (_ORDER.get(item[1], 4), item[0]))
    shown = ordered[start:start + MEMBERS_PER_PAGE]
    waiting = status.waiting_for
    wanted = {m for m, _ in shown} | set(waiting[:WAITING_SHOWN])
    records = client.job_states(sorted(m for m in wanted if not m.startswith(CHILD_PREFIX)))
    done = status.complete
    return {
        "batch": _summary(status, now),
        "on_success": _callback(status.on_success, status.failed == 0 if done else None,
                                "not enqueued: a member failed"),
        "on_complete": _callback(status.on_complete, True if done else None, ""),
        "members": [_member(member, state, records) for member, state in shown],
        "page": pages(len(ordered), start, MEMBERS_PER_PAGE),
        "waiting": [_member(member, "pending", records) for member in waiting[:WAITING_SHOWN]],
        "waiting_more": max(0, len(waiting) - WAITING_SHOWN),
    }
