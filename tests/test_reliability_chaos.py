"""No job lost: real workers drain a queue while the test kills them (``kill -9``) or stops them.

Every job is a ``RelRecord`` (tests/apps/reliability_jobs.py) that adds its id to ``rel:done``
and counts its runs in ``rel:runs``. At the end every id must be done or in ``resque:failed``:
"lost" is the number that must be zero. Running a job twice is allowed (delivery is
at-least-once: a worker killed after the job's work but before it told Redis gives the job to
another worker), so duplicates are counted and printed, not forbidden.

Everything waits against deadlines by polling a condition; nothing asserts how long anything
took. Run with ``-s`` to see the figures (``RELIABILITY ...`` lines).
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from apps.reliability_jobs import (
    DONE,
    Fleet,
    account,
    drained,
    held_jobs,
    push_records,
    worker_leftovers,
)
from worker_helpers import wait_until

pytestmark = pytest.mark.slow

NS = "resque:"
CHAOS_ARGS = ("--queues", "chaos", "--concurrency", "2", "--prune-after", "2",
              "--heartbeat-interval", "0.5", "--interval", "0.1")
CHAOS_JOBS = 3000
CHAOS_WORKERS = 3
CHAOS_SECONDS = 25.0  # the kill loop stops here even if the queue is not empty yet
DRAIN_SECONDS = 30.0  # the last clean worker must finish within this (whole test <= 60 s)


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Fleet]:
    workers = Fleet(redis_url, *CHAOS_ARGS)
    yield workers
    workers.close()


def settled(r: redis.Redis, ids: list[str], queue: str, last_ids: list[str]) -> bool:
    """Every job done or failed, nothing queued or held, only the last worker registered."""
    if r.llen(NS + "queue:" + queue) or r.scard(DONE) + r.llen(NS + "failed") < len(ids):
        return False
    if account(r, ids).lost or held_jobs(r):
        return False
    registered = {m.decode() for m in r.smembers(NS + "workers")}
    beating = {f.decode() for f in r.hkeys(NS + "workers:heartbeat")}
    return registered <= set(last_ids) and beating <= set(last_ids)


@pytest.mark.parametrize("padding", [0, 20_000], ids=["small", "large"])
def test_kill_9_storm_loses_no_job(r: redis.Redis, fleet: Fleet, padding: int) -> None:
    """``large``: every payload over the claim's 4 KB limit, so kills also land while a slot
    reads, checks and takes a large item (and reads the next one with its claim)."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    ids = [f"c{i}" for i in range(CHAOS_JOBS)]
    # Jobs take 2-5 ms and every 10th 10-40 ms: kills land while jobs run, and the queue lasts
    # long enough for a few dozen kills.
    push_records(r, "chaos", ids, sleep_ms=lambda i: 10 + i % 31 if i % 10 == 0 else 2 + i % 4,
                 padding=padding)
    for _ in range(CHAOS_WORKERS):
        fleet.start()

    kills = 0
    chaos_end = time.monotonic() + CHAOS_SECONDS
    while time.monotonic() < chaos_end and r.llen(NS + "queue:chaos"):
        time.sleep(rng.uniform(0.05, 0.3))
        fleet.kill(rng.choice(fleet.running))
        kills += 1
        fleet.start()
    done_during_chaos = r.scard(DONE)
    # The storm ends with every worker killed, whatever jobs they were holding.
    for proc in list(fleet.running):
        fleet.kill(proc)
        kills += 1

    last = fleet.start()
    last_ids = last.wait_registered(2)
    fleet.wait_until(lambda: settled(r, ids, "chaos", last_ids),
                     "every job done or failed and only the last worker left", DRAIN_SECONDS)
    assert last.stop(signal.SIGTERM) == 0, last.log()

    result = account(r, ids)
    print(f"\nRELIABILITY chaos: seed={seed} padding={padding} workers={CHAOS_WORKERS} "
          f"kills={kills} "
          f"done_during_chaos={done_during_chaos} {result.summary()} "
          f"failures_by_exception={sorted(set(e for v in result.failed.values() for e in v))}")
    assert kills >= 5, "the storm must really kill workers"
    assert result.lost == [], fleet.logs()
    # A failure may only be a poison pill (a job held by killed workers too often).
    assert all(e == ["pyresqueworker.PoisonPill"] for e in result.failed.values()), result.failed
    assert set(result.runs) == result.done  # every done job counted its run
    assert worker_leftovers(r, "chaos") == {}


TERM_ARGS = ("--queues", "term", "--concurrency", "2", "--interval", "0.1",
             "--shutdown-timeout", "0.2", "--heartbeat-interval", "0.5", "--prune-after", "2")
TERM_JOBS = 600
TERM_ROUNDS = 3


def queued_ids(r: redis.Redis, queue: str) -> set[str]:
    return {str(json.loads(item)["args"][0]) for item in r.lrange(NS + "queue:" + queue, 0, -1)}


def wait_done(r: redis.Redis, count: int, what: str) -> None:
    wait_until(lambda: r.scard(DONE) >= count, what, 20.0)


def test_term_under_load_requeues_or_finishes_every_job(r: redis.Redis, redis_url: str) -> None:
    ids = [f"t{i}" for i in range(TERM_JOBS)]
    # Every 25th job outlives the 0.2 s shutdown timeout, so TERM must give it back.
    push_records(r, "term", ids, sleep_ms=lambda i: 400 if i % 25 == 0 else 2 + i % 5)
    fleet = Fleet(redis_url, *TERM_ARGS)
    requeued = 0
    try:
        for round_no in range(TERM_ROUNDS):
            pair = [fleet.start(), fleet.start()]
            wait_done(r, r.scard(DONE) + 80, f"progress in round {round_no}")
            assert fleet.stop_all(signal.SIGTERM) == [0, 0], fleet.logs()
            requeued += sum(p.log().count("outcome=requeued") for p in pair)
            # No worker runs now: every job is done or back in its queue, none is held.
            missing = set(ids) - account(r, ids).done - queued_ids(r, "term")
            assert missing == set(), f"neither queued nor done after TERM: {sorted(missing)}"
            assert worker_leftovers(r, "term").keys() <= {"queue length"}
        last = fleet.start()
        fleet.wait_until(lambda: drained(r, "term"), "the last worker to drain the queue", 30.0)
        assert last.stop(signal.SIGTERM) == 0
        result = account(r, ids)
        print(f"\nRELIABILITY term: rounds={TERM_ROUNDS} requeued_at_shutdown_deadline={requeued} "
              f"{result.summary()}")
        assert result.lost == []
        assert result.failed == {}
        assert r.llen(NS + "failed") == 0
        assert worker_leftovers(r, "term") == {}
    finally:
        fleet.close()
