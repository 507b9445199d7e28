"""Results, dependencies and batches: what the clients send, once for both (sans-IO).

Each function is an operation of :mod:`pyresqueworker.client._commands`. A tracked job is
written by the workflow script's ``enqueue`` (its record, and its item on its queue unless it
waits for dependencies); a batch by ``batch``, every job at once. The worker records a job's
end (:mod:`pyresqueworker.worker._tracked`); waiting for it blocks on the job's ``done`` list.
Layout and states: :mod:`pyresqueworker.protocol.workflow` and ``docs/workflows.md``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from ..protocol import wire
from ..protocol._resp import ScriptRun
from ..protocol.workflow import (
    JobSpec,
    WorkflowKeys,
    batch_args,
    enqueue_args,
    public_state,
)
from ._commands import Op, ScriptCall, call, cmd, send
from .inspection import workers_op

__all__ = [
    "BatchStatus", "JobFailed", "JobState", "batch_op", "batch_status_op", "batches_op",
    "enqueue_op", "job_states_op", "outcome", "status_op", "wait_op",
]

_FINAL = ("succeeded", "failed", "canceled")


class JobFailed(Exception):
    """A job whose result was asked for failed (retries exhausted) or was canceled.

    ``exception``, ``error`` and ``backtrace`` are the Resque failure's (for a job canceled
    because a dependency failed: ``"Canceled"`` and which one); ``failure`` is all of it.
    """

    def __init__(self, job_id: str, failure: Mapping[str, Any]) -> None:
        self.job_id = job_id
        self.failure = dict(failure)
        self.exception = str(failure.get("exception") or "RuntimeError")
        self.error = str(failure.get("error") or "")
        backtrace = failure.get("backtrace")
        self.backtrace = [str(line) for line in backtrace] if isinstance(backtrace, list) else []
        super().__init__(f"job {job_id} failed: {self.exception}: {self.error}")


def _script(run: ScriptRun) -> ScriptCall:
    return ScriptCall(run.script, run.keys, run.args)


def enqueue_op(keys: wire.Keys, spec: JobSpec, delayed_item: Optional[str] = None) -> Op[str]:
    """Write a tracked job (and, when it is delayed, its resque-scheduler item, in the same
    ``MULTI``); returns its state: queued, scheduled, waiting or canceled."""
    script = _script(enqueue_args(keys.ns, spec))
    if delayed_item is None or spec.at is None:
        replies = yield from send(script, write=True)
        return _text(replies[0]) if replies else "queued"
    at = spec.at
    replies = yield from send(
        script,
        cmd("RPUSH", keys.delayed(at), delayed_item),
        cmd("SADD", keys.timestamps(delayed_item), keys.delayed_member(at)),
        cmd("ZADD", keys.delayed_schedule, at, str(at)),
        transaction=True, write=True,
    )
    return _text(replies[0]) if replies else "scheduled"


def batch_op(keys: wire.Keys, batch_id: str, parent: str, queue: str, on_success: str,
             on_complete: str, description: str, jobs: Sequence[JobSpec]) -> Op[None]:
    """Open a batch: its record, every job's, and every job on its queue, in one call."""
    yield from send(_script(batch_args(keys.ns, batch_id, parent, queue, on_success,
                                       on_complete, description, jobs)), write=True)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _record(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def status_op(keys: wire.Keys, job_id: str) -> Op[str]:
    """The job's state (see :data:`~pyresqueworker.protocol.workflow.PUBLIC_STATES`). A job
    on its queue or waiting to retry is "running" while a worker holds it (looked up in the
    workers' keys, as resque-web does)."""
    wkeys = WorkflowKeys(keys.ns)
    record = _record((yield from call("HGETALL", wkeys.record(job_id))))
    state = public_state(record, time.time())
    if state in ("queued", "retrying") and (yield from _running(keys, job_id)):
        return "running"
    return state


def _running(keys: wire.Keys, job_id: str) -> Op[bool]:
    return job_id in (yield from _held_ids(keys))


def _held_ids(keys: wire.Keys) -> Op[set[str]]:
    """The ids of the tracked jobs workers hold now (in their worker keys, read as
    resque-web reads what a worker is doing)."""
    held: set[str] = set()
    for worker in (yield from workers_op(keys)):
        payload = (worker.job or {}).get("payload")
        job_id = payload.get("id") if isinstance(payload, dict) else None
        if isinstance(job_id, str):
            held.add(job_id)
    return held


@dataclass(frozen=True)
class JobState:
    """A tracked job as :meth:`Client.job_states` finds it."""

    class_name: str
    queue: str
    state: str  # JobRef.status's word; "waiting": held back for its dependencies


def job_states_op(keys: wire.Keys, job_ids: Sequence[str]) -> Op[dict[str, JobState]]:
    """Class, queue and state now of each job (a job whose record expired is left out).
    A job on its queue or waiting to retry is "running" while a worker holds it."""
    if not job_ids:
        return {}
    wkeys = WorkflowKeys(keys.ns)
    replies = yield from send(*(cmd("HMGET", wkeys.record(job_id), "class", "queue", "state",
                                    "at") for job_id in job_ids))
    held = yield from _held_ids(keys)
    now, found = time.time(), {}
    for job_id, values in zip(job_ids, replies):
        class_name, queue, state, at = (None if v is None else _text(v) for v in values)
        if state is None:
            continue
        shown = "waiting" if state == "waiting" else public_state(
            {"state": state, **({"at": at} if at else {})}, now)
        if shown in ("queued", "retrying") and job_id in held:
            shown = "running"
        found[job_id] = JobState(class_name or "", queue or "", shown)
    return found


def wait_op(keys: wire.Keys, job_id: str, timeout: Optional[float], block: float
            ) -> Op[dict[str, str]]:
    """The job's record once it is finished; waits up to ``timeout`` seconds (None: for
    ever), blocking on Redis ``block`` seconds at a time (the connection's read timeout must
    allow it). :class:`TimeoutError` when the time is up; ``LookupError`` for a job nothing
    knows of."""
    wkeys = WorkflowKeys(keys.ns)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        record = _record((yield from call("HGETALL", wkeys.record(job_id))))
        if not record:
            raise LookupError(f"no job {job_id} is tracked here (enqueued without "
                              f"result_ttl, depends_on or a batch, or its record expired)")
        if record.get("state") in _FINAL:
            return record
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"job {job_id} did not finish in {timeout:g} s "
                               f"(it is {public_state(record, time.time())})")
        wait = block if left is None else min(block, left)
        # BLMOVE of a list onto itself: every waiter wakes, and the element stays for the next
        # (whole seconds below 1 s are not allowed before Redis 6: this is 6.2 and later).
        done = wkeys.done(job_id)
        yield from call("BLMOVE", done, done, "LEFT", "LEFT", max(0.01, round(wait, 3)))


def outcome(job_id: str, record: Mapping[str, str]) -> Any:
    """A finished job's result, or :class:`JobFailed`."""
    state = record.get("state")
    if state == "succeeded":
        if "result" not in record:
            return None
        value = json.loads(record["result"])
        if isinstance(value, dict) and set(value) == {"__unserializable__"}:
            raise ValueError(f"job {job_id} returned a value that is not JSON: "
                             f"{value['__unserializable__']}")
        return value
    if state == "canceled":
        raise JobFailed(job_id, {"exception": "Canceled",
                                 "error": f"dependency {record.get('canceled_by')} failed"})
    try:
        failure = json.loads(record.get("failure") or "{}")
    except ValueError:
        failure = {}
    raise JobFailed(job_id, failure if isinstance(failure, dict) else {})


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch stands. ``jobs`` maps each member (a job id, or ``batch:<id>`` for a
    child batch) to ``pending``, ``succeeded``, ``failed`` or ``canceled``."""

    id: str
    total: int
    pending: int
    succeeded: int
    failed: int
    created_at: float
    completed_at: Optional[float] = None
    description: str = ""
    parent: Optional[str] = None
    queue: str = ""
    on_success: Optional[tuple[str, list[Any]]] = None
    on_complete: Optional[tuple[str, list[Any]]] = None
    jobs: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every member finished (the callbacks are enqueued)."""
        return self.completed_at is not None

    @property
    def waiting_for(self) -> list[str]:
        """The members not finished yet."""
        return sorted(member for member, state in self.jobs.items() if state == "pending")


def _callback(item: str) -> Optional[tuple[str, list[Any]]]:
    if not item:
        return None
    decoded = json.loads(item)
    return str(decoded.get("class")), list(decoded.get("args") or [])


def batch_status_op(keys: wire.Keys, batch_id: str) -> Op[Optional[BatchStatus]]:
    """A batch's status, or None when nothing knows of it (never made, or expired)."""
    wkeys = WorkflowKeys(keys.ns)
    raw, members = yield from send(cmd("HGETALL", wkeys.batch(batch_id)),
                                   cmd("HGETALL", wkeys.batch_jobs(batch_id)))
    record = _record(raw)
    if not record:
        return None
    completed = record.get("completed_at")
    return BatchStatus(
        id=batch_id, total=int(record.get("total", 0)), pending=int(record.get("pending", 0)),
        succeeded=int(record.get("succeeded", 0)), failed=int(record.get("failed", 0)),
        created_at=float(record.get("created_at", 0)),
        completed_at=float(completed) if completed else None,
        description=record.get("description", ""), parent=record.get("parent") or None,
        queue=record.get("queue", ""), on_success=_callback(record.get("on_success", "")),
        on_complete=_callback(record.get("on_complete", "")), jobs=_record(members))


def batches_op(keys: wire.Keys, limit: int = 50) -> Op[list[BatchStatus]]:
    """The newest batches first (at most ``limit``); entries of expired batches are pruned."""
    wkeys = WorkflowKeys(keys.ns)
    found: list[BatchStatus] = []
    gone: list[str] = []
    for raw in (yield from call("ZREVRANGE", wkeys.batches, 0, max(0, limit - 1))):
        batch_id = _text(raw)
        status = yield from batch_status_op(keys, batch_id)
        if status is None:
            gone.append(batch_id)
        else:
            found.append(status)
    if gone:
        yield from call("ZREM", wkeys.batches, *gone)
    return found


def block_seconds(socket_timeout: Optional[float]) -> float:
    """How long one blocking wait may last on a connection with this read timeout."""
    if socket_timeout is None:
        return 5.0
    return max(0.05, min(5.0, math.floor(socket_timeout * 0.8 * 1000) / 1000))
