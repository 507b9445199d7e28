"""Nobody prunes a live worker of another language.

node-resque workers write ``worker:ping:<name>`` (every few seconds), not Resque's heartbeat,
and run as ``node``, not under a Resque process title: by Ruby's two rules a live one on this
host looks dead. Our prune keeps a worker with a fresh ping. node-resque's Scheduler
force-cleans workers whose ping is older than its ``stuckWorkerTimeout``, so it never touches
Python (or Ruby) workers; a Python worker force-cleaned by hand (``queue.forceCleanWorker``)
registers again and finishes its job once.
"""

from __future__ import annotations

import json
import socket
from typing import Callable

import pytest
import redis
from node_helpers import NodeProc, node_call, node_queue, node_runs
from worker_helpers import (
    NS,
    WorkerProc,
    failures,
    ran,
    server_time,
    wait_ran,
    wait_started,
    wait_until,
)

from pyresqueworker.client._client import Client
from pyresqueworker.protocol import wire
from pyresqueworker.protocol.failure import PRUNE_DIRTY_EXIT
from pyresqueworker.worker._node_workers import NODE_STUCK_AFTER
from pyresqueworker.worker._prune import Pruner

Spawn = Callable[..., WorkerProc]
SpawnNode = Callable[..., NodeProc]
HOST = socket.gethostname()
FORCE_CLEANED = "Worker Timeout (killed manually)"


def pruner(r: redis.Redis, queues: tuple[str, ...] = ("*",)) -> Pruner:
    """What a Python worker on this host (or ``pyresque prune``) prunes with."""
    return Pruner(r, wire.Keys(NS), f"{HOST}:1:x", queues, HOST, prune_after=1.0)


def node_name(worker_id: str) -> str:
    return worker_id.rsplit(":", 1)[0]


@pytest.mark.parametrize("queues", [("*",), ("shared",)])
def test_a_python_prune_never_removes_a_live_node_resque_worker_on_this_host(
    node: str, redis_url: str, r: redis.Redis, spawn_node: SpawnNode, queues: tuple[str, ...]
) -> None:
    worker = spawn_node("worker.js", "shared")
    ready = worker.ready()
    node_call(node, redis_url, "enqueue", queue="shared", **{"class": "Hold"}, args=["alive"])
    wait_started(r)
    # Same host, our queue set, its pid not a Resque process, no heartbeat: dead by Ruby's
    # rules, alive by its ping.
    assert pruner(r, queues).dead_workers() == []
    assert pruner(r, queues).prune() == {}
    assert r.sismember(NS + "workers", ready["id"])
    assert json.loads(r.get(NS + f"worker:{ready['id']}") or b"")["payload"]["args"] == ["alive"]
    assert r.lrange(NS + "queue:shared", 0, -1) == []  # its job was not requeued
    r.set("test:release:alive", 1)
    [done] = node_runs(wait_ran(r, 1))
    assert done["worker"] == ready["id"] and failures(r) == []


def test_a_live_node_resque_worker_survives_a_running_python_workers_prunes(
    r: redis.Redis, spawn_worker: Spawn, spawn_node: SpawnNode
) -> None:
    node_worker = spawn_node("worker.js", "shared")
    node_id = node_worker.ready()["id"]
    python = spawn_worker("--queues", "shared", "--heartbeat-interval", "0.2",
                          "--prune-after", "1")
    python.wait_registered()
    start = server_time(r)  # prunes at start-up, then at every heartbeat: ten rounds or so
    wait_until(lambda: server_time(r) >= start + 2, "two seconds of prunes", timeout=5)
    assert r.sismember(NS + "workers", node_id)
    assert "pruned dead worker" not in python.log()


def test_a_dead_node_resque_worker_is_pruned_its_job_failed_not_requeued(
    node: str, redis_url: str, r: redis.Redis, spawn_node: SpawnNode
) -> None:
    worker = spawn_node("worker.js", "gone")
    ready = worker.ready()
    node_call(node, redis_url, "enqueue", queue="gone", **{"class": "Hold"},
              args=["killed", 29.5])
    wait_started(r)
    worker.kill()
    assert pruner(r).dead_workers() == []  # its last ping is fresh: alive to node-resque too
    ping_key = NS + f"worker:ping:{ready['name']}"
    stale = server_time(r) - int(NODE_STUCK_AFTER) - 5
    r.set(ping_key, json.dumps({"time": stale, "name": ready["name"], "queues": "gone"}))
    assert pruner(r).prune() == {ready["id"]: "failed"}
    [entry] = failures(r)
    # The worker key's payload was re-encoded by Redis's cjson: failed for a retry, with it.
    assert entry["payload"] == {"class": "Hold", "queue": "gone", "args": ["killed", 29.5]}
    assert (entry["exception"], entry["worker"], entry["queue"]) == (
        PRUNE_DIRTY_EXIT, ready["id"], "gone")
    assert r.lrange(NS + "queue:gone", 0, -1) == []
    assert not r.sismember(NS + "workers", ready["id"])
    assert r.keys(NS + f"worker:{ready['name']}*") == [] and not r.exists(ping_key)


@pytest.mark.parametrize(("age", "pruned"), [(0, False), (5, True)])
def test_a_node_resque_worker_between_registering_and_its_first_ping(
    r: redis.Redis, age: int, pruned: bool
) -> None:
    """node-resque registers (epoch-seconds ``:started``) an instant before it first pings."""
    worker_id = f"{HOST}:{2**22 + 7}:q"  # no such pid
    r.sadd(NS + "workers", worker_id)
    r.set(NS + f"worker:{worker_id}:started", server_time(r) - age)
    assert pruner(r).dead_workers() == ([worker_id] if pruned else [])


def test_node_resque_stuck_worker_check_never_touches_a_long_python_job(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn, spawn_node: SpawnNode
) -> None:
    python = spawn_worker("--queues", "long", "--heartbeat-interval", "0.2")
    [python_id] = python.wait_registered()
    Client(r).enqueue_to("long", "Hold", "long-job")
    payload = wire.encode_job("Hold", ["long-job"])  # what it wrote (the worker takes it at once)
    wait_started(r)
    # A node-resque worker that died: its ping goes stale, as the scheduler's check wants.
    dead = spawn_node("worker.js", "other")
    dead_name = dead.ready()["name"]
    dead.kill()
    scheduler = spawn_node("scheduler.js", "1000")  # stuckWorkerTimeout: one second
    [cleaned] = scheduler.wait_event("cleanStuckWorker", timeout=20)
    assert cleaned["workerName"] == dead_name and cleaned["delta"] > 1
    # The Python job has run longer than the timeout; nothing of the worker was touched.
    assert r.sismember(NS + "workers", python_id)
    assert json.loads(r.get(NS + f"worker:{python_id}") or b"")["payload"] == json.loads(payload)
    # queue.cleanOldWorkers(age), which operators call, cannot see whose job it is (no
    # "worker" field): it only counts one failure for "undefined".
    failed_before = int(r.get(NS + "stat:failed") or 0)
    results, errors = node_queue(node, redis_url, {"op": "cleanOldWorkers", "age_ms": 1000})
    assert results == [{}]
    assert errors == ["force-cleaning worker undefined, but cannot find queues"]
    assert int(r.get(NS + "stat:failed") or 0) == failed_before + 1
    assert r.sismember(NS + "workers", python_id) and failures(r) == []
    r.set("test:release:long-job", 1)
    [done] = wait_ran(r, 1)
    assert done["worker"] == python_id and len(ran(r)) == 1
    assert failures(r) == [] and r.get(NS + "stat:processed") == b"1"


def test_a_python_worker_force_cleaned_by_node_resque_registers_again_and_runs_once(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn
) -> None:
    python = spawn_worker("--queues", "long", "--heartbeat-interval", "0.2")
    [python_id] = python.wait_registered()
    Client(r).enqueue_to("long", "Hold", "cleaned")
    payload = wire.encode_job("Hold", ["cleaned"])  # what it wrote (the worker takes it at once)
    wait_started(r)
    entry = node_call(node, redis_url, "forceCleanWorker", name=node_name(python_id))
    # What node-resque wrote: a failure for a job that is still running.
    [written] = failures(r)
    assert written == entry
    assert (entry["exception"], entry["backtrace"][1]) == (FORCE_CLEANED, "queue#forceCleanWorker")
    assert (entry["worker"], entry["queue"], entry["payload"]) == (
        node_name(python_id), "long", json.loads(payload))
    assert wire.parse_time(entry["failed_at"]) is not None
    # The worker notices at its next heartbeat and registers again; its job key is intact
    # (node-resque deletes worker:<host:pid>, not worker:<host:pid:queues>).
    wait_until(lambda: r.sismember(NS + "workers", python_id), "re-registration")
    python.wait_log("re-registering")
    assert r.exists(NS + f"worker:{python_id}:started")
    assert json.loads(r.get(NS + f"worker:{python_id}") or b"")["payload"] == json.loads(payload)
    r.set("test:release:cleaned", 1)
    [done] = wait_ran(r, 1)
    assert done["worker"] == python_id
    wait_until(lambda: r.get(NS + "stat:processed") == b"1", "the job counted once")
    assert len(ran(r)) == 1 and python.proc.poll() is None
    assert failures(r) == [entry]  # the operator's retry would run it a second time
