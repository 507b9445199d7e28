"""``@job(max_concurrency=N)``: enforced inside the claim script, across workers and hosts."""

from __future__ import annotations

import redis
from worker_helpers import ran, wait_ran

from pyresqueworker import Client
from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._claim import NO_FINISH, SUCCESS, Claimed, Claimer

RUN_AT = "2026/11/23 10:00:00 UTC"
KEYS = Keys()


def _claimer(r: redis.Redis, wid: str) -> Claimer:
    return Claimer(r, KEYS, wid)


def _classes(r: redis.Redis, queue: str = "jobs") -> list[str]:
    return [job["class"] for job in Client(r).peek(queue, 0, 100)]


def test_a_capped_class_at_its_limit_is_skipped_and_left_queued(r: redis.Redis) -> None:
    client = Client(r)
    r.hset(KEYS.concurrency_caps, "Capped", 1)
    for name in ("Capped", "Capped", "Other"):
        client.enqueue_to("jobs", name, name.lower())
    one, two = _claimer(r, "h:1:jobs"), _claimer(r, "h:2:jobs")
    first = one.claim(["jobs"], NO_FINISH, RUN_AT)
    assert isinstance(first, Claimed) and b'"Capped"' in first.raw
    second = two.claim(["jobs"], NO_FINISH, RUN_AT)
    assert isinstance(second, Claimed) and b'"Other"' in second.raw  # jumped the capped one
    assert _classes(r) == ["Capped"]
    assert two.claim(["jobs"], SUCCESS, RUN_AT) is None  # still capped: nothing popped
    assert _classes(r) == ["Capped"]
    # The running one finishes: the cap frees in the same call that takes the next.
    third = one.claim(["jobs"], SUCCESS, RUN_AT)
    assert isinstance(third, Claimed) and b'"Capped"' in third.raw
    assert r.hgetall(KEYS.running_capped) == {b"h:1:jobs": b"Capped"}


def test_a_dead_workers_slot_does_not_hold_the_cap(r: redis.Redis) -> None:
    client = Client(r)
    r.hset(KEYS.concurrency_caps, "Capped", 1)
    # A worker that died (its worker key was recovered or pruned) left its entry behind.
    r.hset(KEYS.running_capped, "gone:9:jobs", "Capped")
    client.enqueue_to("jobs", "Capped", "x")
    assert isinstance(_claimer(r, "h:1:jobs").claim(["jobs"], NO_FINISH, RUN_AT), Claimed)
    assert r.hgetall(KEYS.running_capped) == {b"h:1:jobs": b"Capped"}


def test_active_job_classes_are_capped_by_their_job_class(r: redis.Redis) -> None:
    client = Client(r)
    r.hset(KEYS.concurrency_caps, "ExportJob", 1)
    client.enqueue_active_job("ExportJob", 1, queue="jobs")
    client.enqueue_active_job("ExportJob", 2, queue="jobs")
    assert isinstance(_claimer(r, "h:1:jobs").claim(["jobs"], NO_FINISH, RUN_AT), Claimed)
    assert _claimer(r, "h:2:jobs").claim(["jobs"], NO_FINISH, RUN_AT) is None
    assert r.llen("resque:queue:jobs") == 1


def test_without_caps_nothing_is_scanned_or_recorded(r: redis.Redis) -> None:
    client = Client(r)
    client.enqueue_to("jobs", "Capped", "x")
    assert isinstance(_claimer(r, "h:1:jobs").claim(["jobs"], NO_FINISH, RUN_AT), Claimed)
    assert not r.exists(KEYS.running_capped)


def test_workers_in_two_processes_never_run_more_than_the_cap(
    r: redis.Redis, spawn_worker: object
) -> None:
    client = Client(r)
    for i in range(6):
        client.enqueue_to("jobs", "Capped", f"c{i}", 0.15)
    for i in range(4):
        client.enqueue_to("jobs", "Record", f"r{i}")
    for _ in range(2):
        spawn_worker("--app", "feature_jobs", "--queues", "jobs",  # type: ignore[operator]
                     "--concurrency", "3")
    wait_ran(r, 10, timeout=20)
    assert max(int(v) for v in r.lrange("test:capped:peak", 0, -1)) == 1
    assert r.hget(KEYS.concurrency_caps, "Capped") == b"1"  # published by the workers
    # The plain jobs queued behind the capped ones did not wait for them.
    order = [run["class"] for run in ran(r)]
    last_record = max(i for i, name in enumerate(order) if name == "Record")
    assert last_record < [i for i, name in enumerate(order) if name == "Capped"][2]
