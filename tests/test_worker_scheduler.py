"""``pyresque-work --scheduler``: the worker also moves due delayed jobs, as master."""

from __future__ import annotations

import time
from typing import Callable

import redis
from worker_helpers import NS, WorkerProc, wait_ran, wait_until

from pyresqueworker import Client

Spawn = Callable[..., WorkerProc]


def test_worker_with_scheduler_runs_a_delayed_job_when_due(
    r: redis.Redis, redis_url: str, spawn_worker: Spawn
) -> None:
    client = Client(url=redis_url)
    ts = client.enqueue_at(int(time.time()) + 2, "Record", "later", queue="high").scheduled_for
    assert ts is not None and client.delayed_count() == 1
    worker = spawn_worker("--queues", "high", "--scheduler")
    worker.wait_registered()
    lock = NS + NS + "resque_scheduler_master_lock"
    wait_until(lambda: r.exists(lock), "the scheduler to take the master lock")
    assert wait_ran(r, 1, timeout=20)[0]["args"] == ["later"]
    assert client.delayed_count() == 0 and not r.exists(NS + "delayed_queue_schedule")
    worker.stop()
    assert not r.exists(lock)  # released on a clean stop
