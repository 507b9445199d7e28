"""Dead-worker pruning by a real ``pyresque-work`` at start-up (spec §8.2, §8.3, §17.3, §21.13).

A dead worker is written into Redis the way a Ruby worker leaves itself behind; the worker
under test must recover its job, clean up after it, and survive ids and heartbeats from other
Resque clients.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from typing import Callable, Optional

import redis
from worker_helpers import (
    FAILURE_KEYS,
    NS,
    WorkerProc,
    failures,
    keys_mentioning,
    ran,
    server_time,
    wait_failures,
    wait_ran,
    wait_started,
    wait_until,
)

from pyresqueworker.protocol import wire

Spawn = Callable[..., WorkerProc]
DEAD = "deadhost:1:q"
DEAD_JOB = b'{"class":"Record","args":["from the dead"],"extra":1}'
LOCK = NS + "pruning_dead_workers_in_progress"
HOST = socket.gethostname()


def plant_dead_worker(r: redis.Redis, worker_id: str = DEAD, job: Optional[bytes] = DEAD_JOB,
                      age: int = 400, heartbeat: Optional[str] = None) -> None:
    """What a Ruby worker that died mid-job leaves: registration, stats, job, old heartbeat."""
    with r.pipeline() as pipe:
        pipe.sadd(NS + "workers", worker_id)
        pipe.set(NS + f"worker:{worker_id}:started", "2024-01-15 09:50:00 +0000")
        pipe.set(NS + f"stat:processed:{worker_id}", 5)
        pipe.set(NS + f"stat:failed:{worker_id}", 1)
        beat = heartbeat if heartbeat is not None else wire.heartbeat_value(server_time(r) - age)
        pipe.hset(NS + "workers:heartbeat", worker_id, beat)
        if job is not None:
            pipe.set(NS + f"worker:{worker_id}",
                     b'{"queue":"q","run_at":"2024-01-15T09:50:00Z","payload":' + job + b"}")
        pipe.execute()


def test_dead_worker_found_at_start_up_has_its_job_requeued_and_runs(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    plant_dead_worker(r)
    r.rpush(NS + "queue:q", b'{"class":"Record","args":["queued"]}')
    worker = spawn_worker("--queues", "q")
    [worker_id] = worker.wait_registered()
    # Back at the FRONT of its queue, so it runs before what was already waiting.
    done = wait_ran(r, 2)
    assert [d["args"] for d in done] == [["from the dead"], ["queued"]]
    assert all(d["worker"] == worker_id for d in done)
    assert failures(r) == []
    assert keys_mentioning(r, [DEAD]) == {}
    # The prune took Resque's lock only while it pruned: released once done, so a Ruby
    # worker starting now runs its own start-up prune.
    assert r.get(LOCK) is None


def test_a_prune_lock_held_by_another_worker_is_left_alone(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    r.set(LOCK, "ruby-host:4242:q", ex=60)
    worker = spawn_worker("--queues", "q", "--heartbeat-interval", "0.2", "--prune-after", "5")
    worker.wait_registered()
    worker.wait_title("Waiting for q")
    wait_until(lambda: worker.log().count("worker started"), "started")
    assert r.get(LOCK) == b"ruby-host:4242:q"  # not taken, not released by us
    assert 0 < r.ttl(LOCK) <= 60


def test_dead_workers_job_becomes_a_prune_failure_with_on_dead_worker_fail(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    plant_dead_worker(r)
    worker = spawn_worker("--queues", "q", "--on-dead-worker", "fail")
    worker.wait_registered()
    [raw] = [x for x in r.lrange(NS + "failed", 0, -1)]
    entry = json.loads(raw)
    assert list(entry) == FAILURE_KEYS
    assert entry["exception"] == "Resque::PruneDeadWorkerDirtyExit"
    assert entry["error"] == f"Worker {DEAD} did not gracefully exit while processing Record"
    assert (entry["worker"], entry["queue"], entry["backtrace"]) == (DEAD, "q", [])
    assert b',"payload":' + DEAD_JOB + b"," in raw
    assert keys_mentioning(r, [DEAD]) == {}
    assert ran(r) == [] and r.llen(NS + "queue:q") == 0


def test_other_clients_ids_and_odd_heartbeats_never_crash_the_prune(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    # goworker: "pid-N" ids, RFC 3339 heartbeats with nanoseconds from the local clock.
    plant_dead_worker(r, "deadhost:77-0:q", job=None,
                      heartbeat="2024-01-15T09:50:00.123456789Z")
    # Values Ruby's Time.parse would choke on: skipped, never fatal, never pruned.
    plant_dead_worker(r, "oddhost:8:q", job=None, heartbeat="not a time")
    plant_dead_worker(r, "oddhost:9:q", job=None, heartbeat="")
    # An id that is no Resque id at all, and an old heartbeat of an unregistered worker.
    r.sadd(NS + "workers", "garbage")
    r.hset(NS + "workers:heartbeat", "gonehost:5:q", wire.heartbeat_value(server_time(r) - 400))
    worker = spawn_worker("--queues", "q")
    [worker_id] = worker.wait_registered()

    assert keys_mentioning(r, ["deadhost:77-0:q", "gonehost:5:q"]) == {}
    assert {m.decode() for m in r.smembers(NS + "workers")} == {
        worker_id, "oddhost:8:q", "oddhost:9:q", "garbage"}
    r.rpush(NS + "queue:q", '{"class":"Record","args":["fine"]}')
    assert wait_ran(r, 1)[0]["args"] == ["fine"]
    log = worker.log()
    assert "prune failed" not in log and "Traceback" not in log
    assert worker.proc.poll() is None


def test_same_host_pid_rule_prunes_dead_pids_and_keeps_live_workers(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    first = spawn_worker("--queues", "q", "--concurrency", "2")
    first_ids = first.wait_registered(2)
    first.wait_title("Waiting for q")
    # A worker of this host whose process is gone, with a FRESH heartbeat: only the pid rule
    # (spec §8.3) can find it dead.
    short_lived = subprocess.Popen(["true"])
    short_lived.wait()  # reaped: its pid is no live process now
    dead_id = f"{HOST}:{short_lived.pid}:q"
    plant_dead_worker(r, dead_id, age=0)
    r.delete(LOCK)
    second = spawn_worker("--queues", "q")
    second.wait_registered()
    assert r.get(LOCK) is None  # the second worker's start-up prune took it and let it go
    assert keys_mentioning(r, [dead_id]) == {}
    assert wait_ran(r, 1)[0]["args"] == ["from the dead"]  # its job was recovered
    # The live worker (slot ids "pid" and "pid-1") survived: its title shows it is Resque.
    assert set(first.ids()) == set(first_ids)


def test_a_job_that_keeps_killing_its_worker_becomes_a_poison_pill_failure(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    crash = b'{"class":"Crash","args":["pill"]}'
    r.rpush(NS + "queue:q", crash)
    flags = ("--queues", "q", "--max-recoveries", "1")
    dead_ids = []
    for attempt in (1, 2):  # the first run, then the one allowed recovery
        worker = spawn_worker(*flags)
        assert worker.wait_exit() == -signal.SIGKILL  # the job killed it
        assert len(wait_started(r, attempt)) == attempt
        dead_ids.append(f"{HOST}:{worker.pid}:q")
        assert r.sismember(NS + "workers", dead_ids[-1])  # died without unregistering
        r.delete(LOCK)  # as if a minute had passed: the next worker prunes at start-up
    last = spawn_worker(*flags)
    [last_id] = last.wait_registered()
    [entry] = wait_failures(r, 1)
    assert entry["exception"] == "pyresqueworker.PoisonPill"
    assert "Crash" in entry["error"] and "1 times" in entry["error"]
    assert entry["payload"] == json.loads(crash) and entry["queue"] == "q"
    assert entry["worker"] in dead_ids
    assert len(r.lrange("test:started", 0, -1)) == 2  # not run a third time
    assert r.llen(NS + "queue:q") == 0
    assert keys_mentioning(r, dead_ids) == {}
    wait_until(lambda: last.proc.poll() is None and last.ids() == [last_id], "last worker alive")


def test_a_worker_killed_while_taking_a_large_item_loses_nothing(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    """Killed after the claim marked the worker key, before or after it moved the item into
    its raw list: the item is run once, and no failure is invented."""
    big = json.dumps({"class": "Record", "args": ["big", "x" * 20_000]}).encode()
    moved, queued = "deadhost:1:moved", "deadhost:2:queued"
    for worker_id in (moved, queued):
        plant_dead_worker(r, worker_id, job=None)
        r.set(NS + f"worker:{worker_id}",
              b'{"queue":"q","run_at":"2024-01-15T09:50:00Z","payload":"payload being checked"}')
    r.rpush(NS + f"pyresque:raw:{moved}", big)  # this one had moved it (LMOVE) already
    r.rpush(NS + "queue:q", big.replace(b'"big"', b'"still queued"'))
    spawn_worker("--queues", "q").wait_registered()
    done = wait_ran(r, 2)
    assert sorted(d["args"][0] for d in done) == ["big", "still queued"]
    assert failures(r) == []
    assert keys_mentioning(r, [moved, queued]) == {}
