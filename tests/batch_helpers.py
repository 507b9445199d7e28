"""Batches for the dashboard and CLI tests: made with the client, their jobs finished as a
worker records a tracked job's end (the workflow script's ``finish``), no worker needed."""

from __future__ import annotations

import json
import time
from typing import Any, Optional

import redis

from pyresqueworker import Client
from pyresqueworker.protocol import wire
from pyresqueworker.protocol.workflow import Tracking, finish_command

NS = "resque:"


def make_batch(client: Client, jobs: list[tuple[str, list[Any]]], *, description: str = "",
               on_success: Optional[tuple[str, list[Any]]] = ("Notify", [42]),
               on_complete: Optional[tuple[str, list[Any]]] = ("Done", []),
               parent: Optional[str] = None, queue: str = "low") -> tuple[str, list[str]]:
    """A batch of ``(class, args)`` jobs on queue ``q``; its id and its jobs' ids."""
    with client.batch(on_success=on_success, on_complete=on_complete, queue=queue,
                      description=description) as batch:
        refs = [batch.enqueue_to("q", class_name, *args) for class_name, args in jobs]
        if parent is not None:
            batch.parent = parent  # as when opened inside a job of the parent batch
    return batch.id, [str(ref) for ref in refs]


def finish(r: redis.Redis, batch_id: str, job_id: str, outcome: str = "succeeded") -> None:
    """Record the job's end as a worker does (``outcome``: succeeded or failed)."""
    data = "null" if outcome == "succeeded" else json.dumps(
        {"exception": "RuntimeError", "error": "boom", "backtrace": []})
    r.execute_command(  # type: ignore[no-untyped-call]
        *finish_command(NS, Tracking(job_id, 0, batch_id), outcome, data).eval_args())


def hold(r: redis.Redis, job_id: str, worker: str = "web1:4242:q") -> None:
    """Make a registered worker hold the job (what marks it "running")."""
    r.sadd(NS + "workers", worker)
    r.set(NS + "worker:" + worker, wire.dumps({
        "queue": "q", "run_at": wire.iso_utc(time.time()),
        "payload": {"class": "Square", "args": [1], "id": job_id}}))
