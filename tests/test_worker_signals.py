"""Stopping a real ``pyresque-work``: graceful and immediate stops, the shutdown deadline,
draining, and ``kill -9`` mid-job (spec §5 interval 0, §7.2 unregister, §8.3, §11)."""

from __future__ import annotations

import json
import signal
from typing import Callable

import pytest
import redis
from worker_helpers import (
    NS,
    WorkerProc,
    failures,
    keys_mentioning,
    ran,
    wait_ran,
    wait_started,
    wait_until,
)

Spawn = Callable[..., WorkerProc]
HOLD = b'{"class":"Hold","args":["stop"]}'
NEXT = b'{"class":"Record","args":["next"]}'


def start_holding(spawn_worker: Spawn, r: redis.Redis, *flags: str) -> tuple[WorkerProc, str]:
    """A worker on queue q running a Hold job, with NEXT queued behind it."""
    r.rpush(NS + "queue:q", HOLD, NEXT)
    r.sadd(NS + "queues", "q")
    worker = spawn_worker("--queues", "q", *flags)
    [worker_id] = worker.wait_registered()
    wait_started(r)
    return worker, worker_id


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGTERM])
def test_stop_signal_lets_the_running_job_finish_then_unregisters(
    r: redis.Redis, spawn_worker: Spawn, sig: int
) -> None:
    worker, worker_id = start_holding(spawn_worker, r, "--shutdown-timeout", "20")
    worker.send(sig)
    worker.wait_log("shutdown requested")
    assert worker.proc.poll() is None  # still waiting for the job
    r.set("test:release:stop", 1)
    assert worker.wait_exit() == 0
    assert [d["class"] for d in ran(r)] == ["Hold"]  # the job finished, nothing new started
    assert r.lrange(NS + "queue:q", 0, -1) == [NEXT]
    assert failures(r) == []
    assert r.get(NS + "stat:processed") == b"1"
    assert keys_mentioning(r, [worker_id]) == {}


def test_job_running_at_the_deadline_goes_back_to_the_front_of_its_queue(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker, worker_id = start_holding(spawn_worker, r, "--shutdown-timeout", "0.3")
    assert worker.stop(signal.SIGTERM) == 0
    assert r.lrange(NS + "queue:q", 0, -1) == [HOLD, NEXT]  # byte for byte, at the front
    assert failures(r) == [] and ran(r) == []
    assert keys_mentioning(r, [worker_id]) == {}


def test_job_running_at_the_deadline_is_a_dirty_exit_failure_with_fail(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker, worker_id = start_holding(spawn_worker, r, "--shutdown-timeout", "0.3",
                                      "--on-shutdown-timeout", "fail")
    assert worker.stop(signal.SIGQUIT) == 0
    [entry] = failures(r)
    assert entry["exception"] == "Resque::DirtyExit"
    assert entry["error"] == "Job still being processed"
    assert (entry["worker"], entry["queue"]) == (worker_id, "q")
    assert entry["payload"] == json.loads(HOLD) and entry["backtrace"] == []
    assert r.lrange(NS + "queue:q", 0, -1) == [NEXT]
    assert keys_mentioning(r, [worker_id]) == {}


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_or_int_stops_at_once_with_the_same_clean_up(
    r: redis.Redis, spawn_worker: Spawn, second: int
) -> None:
    other = b'{"class":"Hold","args":["other"]}'
    r.rpush(NS + "queue:q", HOLD, other)
    worker = spawn_worker("--queues", "q", "--concurrency", "3", "--shutdown-timeout", "60")
    ids = worker.wait_registered(3)
    wait_started(r, 2)  # two slots busy, one idle
    if second == signal.SIGTERM:
        worker.send(signal.SIGTERM)
        worker.wait_log("shutdown requested")
    worker.send(second)
    # The Hold jobs would run for 30 s and the deadline is 60 s: exiting now is the point.
    assert worker.wait_exit(timeout=10) == 0
    assert sorted(r.lrange(NS + "queue:q", 0, -1)) == sorted([HOLD, other])
    assert failures(r) == [] and ran(r) == []
    assert keys_mentioning(r, ids) == {}


@pytest.mark.parametrize("flags", [["--exit-on-complete"], ["--interval", "0"]])
def test_draining_works_the_queues_empty_and_exits(
    r: redis.Redis, spawn_worker: Spawn, flags: list[str]
) -> None:
    r.rpush(NS + "queue:high", '{"class":"Sleep","args":[0.3,"drain"]}',
            '{"class":"Record","args":[1]}')
    r.rpush(NS + "queue:low", '{"class":"Record","args":[2]}', '{"class":"Boom","args":[]}')
    worker = spawn_worker("--queues", "high,low", "--concurrency", "2", *flags)
    assert worker.wait_exit() == 0
    # The slot that found the queues empty did not cut short the one still sleeping.
    assert sorted(str(d["args"][0]) for d in ran(r)) == ["0.3", "1", "2"]
    assert len(failures(r)) == 1
    assert r.get(NS + "stat:processed") == b"4"
    assert r.smembers(NS + "workers") == set() and r.hlen(NS + "workers:heartbeat") == 0
    assert [k for k in r.keys(NS + "*") if b"worker:" in k or b"stat:processed:" in k] == []


def test_kill_9_mid_job_keeps_the_job_and_a_new_worker_recovers_it(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker, dead_id = start_holding(spawn_worker, r)
    worker.kill()
    # Never lost: the job is in the dead worker's key, exactly as pushed.
    held = r.get(NS + f"worker:{dead_id}")
    assert held is not None and held.endswith(b',"payload":' + HOLD + b"}")
    assert r.lrange(NS + "queue:q", 0, -1) == [NEXT]

    r.set("test:release:stop", 1)  # the recovered run may finish at once
    # The dead worker's own start-up took Resque's prune lock (60 s). Free it, as a worker
    # starting a minute later would find it, so that the new worker prunes at start-up.
    r.delete(NS + "pruning_dead_workers_in_progress")
    second = spawn_worker("--queues", "q")
    [new_id] = second.wait_registered()
    done = wait_ran(r, 2)
    assert [(d["class"], d["worker"]) for d in done] == [("Hold", new_id), ("Record", new_id)]
    assert failures(r) == []
    assert keys_mentioning(r, [dead_id]) == {}
    assert "pruned dead worker" in second.log()
    wait_until(lambda: r.llen(NS + "queue:q") == 0, "queue drained")


def test_signals_in_a_burst_never_wedge_the_worker(r: redis.Redis, spawn_worker: Spawn) -> None:
    # A second TERM arriving while the first one's handler runs used to deadlock the main
    # thread (both handlers took the same Event lock); handlers now only record the signal.
    workers = [spawn_worker("--queues", "q", "--concurrency", "2") for _ in range(3)]
    for worker in workers:
        worker.wait_registered(2)
    for worker in workers:
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGUSR2, signal.SIGCONT,
                    signal.SIGTERM):
            worker.send(sig)
    for worker in workers:
        assert worker.wait_exit(timeout=15) == 0
