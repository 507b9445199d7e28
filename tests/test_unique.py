"""Unique jobs (gocraft/work semantics): one queued or scheduled at a time, freed at start."""

from __future__ import annotations

import redis
from worker_helpers import wait_ran, wait_until

from pyresqueworker import Client
from pyresqueworker.client._unique import UNIQUE_TTL, unique_digest
from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._claim import NO_FINISH, Claimed, Claimer
from pyresqueworker.worker.scheduler import Scheduler

RUN_AT = "2026/11/23 10:00:00 UTC"


def test_a_second_identical_job_is_refused_until_a_worker_starts_the_first(
    r: redis.Redis,
) -> None:
    client = Client(r)
    assert client.enqueue_unique("Report", 7, queue="jobs") is not None
    assert client.enqueue_unique("Report", 7, queue="jobs") is None
    assert client.enqueue_unique("Report", 8, queue="jobs") is not None  # other args, other kind
    digest = unique_digest("Report", [7])
    assert r.lrange("resque:queue:jobs", 0, 0) == [
        f'{{"class":"Report","args":[7],"unique_key":"{digest}"}}'.encode()]
    assert UNIQUE_TTL - 5 < r.ttl(f"resque:pyresque:unique:{digest}") <= UNIQUE_TTL
    claimed = Claimer(r, Keys(), "h:1:jobs").claim(["jobs"], NO_FINISH, RUN_AT)
    assert isinstance(claimed, Claimed)
    assert not r.exists(f"resque:pyresque:unique:{digest}")  # released at start
    assert client.enqueue_unique("Report", 7, queue="jobs") is not None


def test_unique_by_key_ignores_the_args(r: redis.Redis) -> None:
    client = Client(r)
    assert client.enqueue_unique_by_key("Sync", {"account": 1}, "first", queue="jobs")
    assert not client.enqueue_unique_by_key("Sync", {"account": 1}, "second", queue="jobs")
    assert client.enqueue_unique_by_key("Sync", {"account": 2}, "second", queue="jobs")
    assert r.llen("resque:queue:jobs") == 2


def test_unique_enqueue_inside_the_callers_transaction(r: redis.Redis) -> None:
    client = Client(r)
    with r.pipeline(transaction=True) as pipe:
        pipe.set("order:1", "paid")
        client.enqueue_unique("Ship", 1, queue="jobs", pipeline=pipe)
        client.enqueue_unique("Ship", 1, queue="jobs", pipeline=pipe)
        results = pipe.execute()
    assert results == [True, 1, 0]
    assert r.llen("resque:queue:jobs") == 1


def test_a_scheduled_unique_job_blocks_its_kind_and_keeps_its_key_through_the_scheduler(
    r: redis.Redis,
) -> None:
    now = 2_000_000_000.0
    client = Client(r)
    from pyresqueworker.client._unique import UniqueJobs

    jobs = UniqueJobs(client, clock=lambda: now)
    assert jobs.enqueue("jobs", "Digest", ("daily",), when=now + 600)
    assert not jobs.enqueue("jobs", "Digest", ("daily",))  # scheduled counts as queued
    digest = unique_digest("Digest", ["daily"])
    item = f'{{"class":"Digest","args":["daily"],"queue":"jobs","unique_key":"{digest}"}}'
    assert r.lrange(f"resque:delayed:{int(now) + 600}", 0, -1) == [item.encode()]
    assert r.smembers(f"resque:timestamps:{item}") == {f"delayed:{int(now) + 600}".encode()}
    assert r.ttl(f"resque:pyresque:unique:{digest}") > UNIQUE_TTL
    assert Scheduler(client, clock=lambda: now + 601).run_once() == 1
    assert r.lrange("resque:queue:jobs", 0, -1) == [
        f'{{"class":"Digest","args":["daily"],"unique_key":"{digest}"}}'.encode()]
    Claimer(r, Keys(), "h:1:jobs").claim(["jobs"], NO_FINISH, RUN_AT)
    assert not r.exists(f"resque:pyresque:unique:{digest}")


def test_a_real_worker_runs_unique_jobs_and_frees_them(
    r: redis.Redis, spawn_worker: object
) -> None:
    client = Client(r)
    assert client.enqueue_unique("Record", "u", queue="jobs")
    assert not client.enqueue_unique("Record", "u", queue="jobs")
    spawn_worker("--queues", "jobs")  # type: ignore[operator]
    wait_ran(r, 1)
    wait_until(lambda: client.enqueue_unique("Record", "u", queue="jobs"), "the lock to go")
    wait_ran(r, 2)

