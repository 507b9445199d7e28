"""What the workflow load left in each group's Redis, read after the last drain.

:func:`collect` runs before the key census: it waits (a little) for batches whose last member
may still be running (a Ruby job is in no queue while it runs), reads every batch's status,
every tracked job's record (and, for singles and chain steps, what the public API's
``result()`` and ``status()`` say), the callback items by token and the Ruby worker's run log;
then it removes what the soak left there on purpose (the callback queues nobody consumes, the
Ruby worker's log), so that the census sees only what the workers left. The verdict is
:mod:`soakkit.wfcheck`'s.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import redis

from pyresqueworker import BatchStatus, Client, JobFailed
from soakkit.ruby import QUEUE as RUBY_QUEUE
from soakkit.workflow import Made, callback_queue

__all__ = ["RUBY_RAN", "Seen", "collect"]

RUBY_RAN = "test:ruby:ran"  # tracking_worker.rb's log of the runs it made (group a's Redis)


@dataclass
class Seen:
    """What one group's Redis holds at the end."""

    callbacks: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, token)
    batches: dict[str, Optional[BatchStatus]] = field(default_factory=dict)
    records: dict[str, dict[str, str]] = field(default_factory=dict)  # job id -> its hash
    api: dict[str, str] = field(default_factory=dict)  # job id -> what result()/status() say
    ruby_runs: dict[str, list[str]] = field(default_factory=dict)  # job id -> outcomes
    waited: float = 0.0  # seconds the batches took to complete after the drain


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def collect(conn: redis.Redis, group: str, made: Sequence[Made], settle: float = 15.0) -> Seen:
    """Read ``group``'s workflow state (see the module); waits up to ``settle`` s for batches
    whose last member may still be running (a Ruby job is in no queue while it runs)."""
    client, seen = Client(conn), Seen()
    batches = [m.batch_id for m in made if m.kind == "batch" and m.batch_id]
    began = time.monotonic()
    while True:
        seen.batches = {bid: client.batch_status(bid) for bid in batches}
        if all(s is None or s.complete for s in seen.batches.values()):
            break
        if time.monotonic() - began > settle:
            break
        time.sleep(0.5)
    seen.waited = time.monotonic() - began
    ids = [job.job_id for m in made for job in m.jobs]
    for first in range(0, len(ids), 500):
        chunk = ids[first:first + 500]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.hgetall(f"resque:pyresque:job:{job_id}")
            for job_id, raw in zip(chunk, pipe.execute()):
                seen.records[job_id] = {_text(k): _text(v) for k, v in raw.items()}
    for m in made:
        if m.kind != "batch":
            for job in m.jobs:
                seen.api[job.job_id] = _api(client, job.job_id)
    queue = f"resque:queue:{callback_queue(group)}"
    for raw in conn.lrange(queue, 0, -1):
        item = json.loads(raw)
        args = item.get("args") or ["?", "?"]
        seen.callbacks[(str(args[0]), str(args[1]))] += 1
    for raw in conn.lrange(RUBY_RAN, 0, -1) if group == "a" else ():
        entry = json.loads(raw)
        job_id = str(json.loads(entry.get("raw") or "{}").get("id") or "")
        seen.ruby_runs.setdefault(job_id, []).append(str(entry.get("outcome")))
    # What the soak left on purpose goes, so the key census sees what the workers left.
    with conn.pipeline(transaction=False) as pipe:
        pipe.delete(queue, RUBY_RAN, f"resque:queue:{RUBY_QUEUE}")
        pipe.srem("resque:queues", callback_queue(group), RUBY_QUEUE)
        pipe.execute()
    return seen


def _api(client: Client, job_id: str) -> str:
    """``ok <result JSON>``, ``failed``, ``canceled`` or another state, as the API says."""
    try:
        return "ok " + json.dumps(client.result(job_id, timeout=0))
    except JobFailed as failed:
        return "canceled" if failed.exception == "Canceled" else "failed"
    except LookupError:
        return "unknown"
    except TimeoutError:
        return client.status(job_id)
