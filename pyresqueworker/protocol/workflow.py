"""Results, dependencies and batches on the wire: the payload's fields, the keys, the script.

A job that someone follows (a result kept, a dependency, a batch) is *tracked*: its payload
carries its ``"id"`` and a ``"pyresque"`` object as extra top-level fields, which Ruby Resque
ignores and re-encodes unchanged::

    {"class":"Square","args":[3],"id":"5f0c…","pyresque":{"ttl":3600,"batch":"b8e1…"}}

and its record lives under ``<ns>pyresque:job:<id>``. A job without those fields costs what it
always cost: nothing here runs for it. Every change of state is one call of one Lua script,
``pyresque_workflow.lua``, which the Ruby module (``pyresque_tracking.rb``) sends too, so
Python and Ruby keep the same books. The keys and their expiry: ``docs/workflows.md``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

from ._resp import LuaScript, ScriptRun

__all__ = [
    "KEEP_SECONDS", "PENDING_SECONDS", "PUBLIC_STATES", "TRACK_FIELD", "WORKFLOW",
    "WORKFLOW_SOURCE",
    "Tracking", "WorkflowKeys", "enqueue_args", "finish_command", "public_state",
    "retrying_command", "tracking_of",
]

#: The payload field that marks a tracked job (beside its ``"id"``).
TRACK_FIELD = "pyresque"
#: How long a finished job's record (without a result), its dependents' records and a
#: completed batch are kept.
KEEP_SECONDS = 86_400
#: How long the record of a job not finished yet is kept (a queue may be long).
PENDING_SECONDS = 30 * 86_400
#: What :meth:`JobRef.status` answers.
PUBLIC_STATES = ("queued", "scheduled", "running", "succeeded", "failed", "retrying",
                 "canceled", "unknown")

# (Shipped beside the Ruby module, which reads the same file: pyresqueworker/ruby_client is a
# link to examples/ruby_client.)
WORKFLOW_SOURCE = (Path(__file__).resolve().parent.parent / "ruby_client"
                   / "pyresque_workflow.lua").read_text(encoding="utf-8")
WORKFLOW = LuaScript(WORKFLOW_SOURCE)


class Tracking(NamedTuple):
    """What a tracked payload says: its id, how long to keep its result (0: none), its batch."""

    job_id: str
    result_ttl: int
    batch: str


def tracking_of(payload: Any) -> Optional[Tracking]:
    """The tracking of a decoded payload, or None for a job nobody follows."""
    if not isinstance(payload, dict):
        return None
    track = payload.get(TRACK_FIELD)
    job_id = payload.get("id")
    if not isinstance(track, dict) or not isinstance(job_id, str) or not job_id:
        return None
    ttl = track.get("ttl")
    batch = track.get("batch")
    return Tracking(job_id, ttl if isinstance(ttl, int) and ttl > 0 else 0,
                    batch if isinstance(batch, str) else "")


class WorkflowKeys:
    """The keys of the workflow bookkeeping under one namespace (all under ``<ns>pyresque:``)."""

    __slots__ = ("ns", "own")

    def __init__(self, ns: str) -> None:
        self.ns, self.own = ns, ns + "pyresque:"

    def record(self, job_id: str) -> str:
        """A tracked job's hash: state, class, queue, result or failure, batch, times."""
        return self.own + "job:" + job_id

    def done(self, job_id: str) -> str:
        """A list that gets one element when the job ends (what waiting blocks on)."""
        return self.own + "done:" + job_id

    def dependents(self, job_id: str) -> str:
        """The ids of jobs waiting for this one."""
        return self.own + "dependents:" + job_id

    def batch(self, batch_id: str) -> str:
        """A batch's hash: counts, callbacks, parent, times."""
        return self.own + "batch:" + batch_id

    def batch_jobs(self, batch_id: str) -> str:
        """A batch's members (job ids, ``batch:<id>`` for child batches) and their states."""
        return self.own + "batch:" + batch_id + ":jobs"

    @property
    def batches(self) -> str:
        """Every batch by creation time (a sorted set; entries of expired batches are pruned
        when listed)."""
        return self.own + "batches"


def _run(ns: str, op: str, *args: Any) -> ScriptRun:
    # KEYS[1] only routes the call in a Redis Cluster (every key is under the namespace).
    return WORKFLOW.run([ns + "pyresque:"], [op, ns, repr(round(time.time(), 6)), *args])


def finish_command(ns: str, tracking: Tracking, outcome: str, data: str,
                   result_ttl: Optional[int] = None) -> ScriptRun:
    """The call that records a tracked job's end: ``outcome`` "succeeded" (``data``: the
    result as JSON) or "failed" (``data``: the failure as JSON). It releases or cancels the
    job's dependents and counts it in its batch; sent twice, it counts once."""
    ttl = tracking.result_ttl if result_ttl is None else result_ttl
    return _run(ns, "finish", tracking.job_id, outcome, data, ttl, KEEP_SECONDS)


def retrying_command(ns: str, job_id: str) -> ScriptRun:
    """The call that marks a tracked job as waiting for another attempt."""
    return _run(ns, "retrying", job_id)


class JobSpec(NamedTuple):
    """One tracked job as the enqueue and batch operations of the script take it."""

    job_id: str
    queue: str
    item: str
    class_name: str
    batch: str = ""
    depends_on: Sequence[str] = ()
    on_dependency_failure: str = "cancel"
    at: Optional[int] = None  # a delayed job: its time (the caller schedules the item)

    def args(self) -> list[Any]:
        return [self.job_id, self.queue, self.item, self.class_name, self.batch,
                json.dumps(list(self.depends_on)), self.on_dependency_failure,
                "" if self.at is None else str(self.at)]


def enqueue_args(ns: str, job: JobSpec) -> ScriptRun:
    """The call that records one tracked job and queues it (or holds it for its
    dependencies); answers its state: queued, scheduled, waiting or canceled."""
    return _run(ns, "enqueue", KEEP_SECONDS, PENDING_SECONDS, *job.args())


def batch_args(ns: str, batch_id: str, parent: str, queue: str, on_success: str,
               on_complete: str, description: str, jobs: Sequence[JobSpec]) -> ScriptRun:
    """The call that opens a batch with all of its jobs at once (callbacks: encoded items,
    or "" for none)."""
    flat: list[Any] = []
    for job in jobs:
        flat += job.args()
    return _run(ns, "batch", KEEP_SECONDS, PENDING_SECONDS, batch_id, parent, queue,
                on_success, on_complete, description, len(jobs), *flat)


def public_state(record: Mapping[str, str], now: float) -> str:
    """What a job's record says its state is, in :data:`PUBLIC_STATES` terms (a job waiting
    for its dependencies is "scheduled": it is not on its queue yet)."""
    state = record.get("state")
    if state is None:
        return "unknown"
    if state == "waiting":
        return "scheduled"
    if state == "scheduled":
        at = record.get("at")
        return "queued" if at and float(at) <= now else "scheduled"
    return state if state in PUBLIC_STATES else "unknown"
