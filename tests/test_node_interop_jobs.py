"""Jobs both ways between real node-resque and Python on one Redis, delayed ones included.

node-resque enqueues (``queue.enqueue``, ``enqueueIn``, ``enqueueAt``) and a ``pyresque-work``
runs the job; Python enqueues (``enqueue_to``, ``enqueue_in``, ``enqueue_at``) and a
node-resque worker runs it. The arguments must arrive as they were sent, each way.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import redis
from node_helpers import ROUND_TRIP_ARGS, NodeProc, node_queue, node_runs, python_runs, wait_due
from worker_helpers import NS, WorkerProc, ran, wait_ran, wait_until

from pyresqueworker.client._client import Client

Spawn = Callable[..., WorkerProc]
SpawnNode = Callable[..., NodeProc]


def test_node_enqueue_runs_on_a_python_worker_with_exact_arguments(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn
) -> None:
    results, errors = node_queue(node, redis_url, {
        "op": "enqueue", "queue": "from_node", "class": "Record", "args": ROUND_TRIP_ARGS})
    assert (results, errors) == ([True], [])
    # node-resque's payload carries the queue too; Python runs it like Ruby's.
    [raw] = r.lrange(NS + "queue:from_node", 0, -1)
    assert json.loads(raw) == {"class": "Record", "queue": "from_node", "args": ROUND_TRIP_ARGS}
    assert r.smembers(NS + "queues") == {b"from_node"}
    worker = spawn_worker("--queues", "from_node")
    [done] = wait_ran(r, 1)
    assert done["args"] == ROUND_TRIP_ARGS
    assert done["worker"] == worker.wait_registered()[0]
    assert r.get(NS + "stat:processed") == b"1" and r.lrange(NS + "failed", 0, -1) == []


def test_python_enqueue_runs_on_a_node_worker_with_exact_arguments(
    r: redis.Redis, spawn_node: SpawnNode
) -> None:
    Client(r).enqueue_to("from_python", "Record", *ROUND_TRIP_ARGS)
    worker = spawn_node("worker.js", "from_python")
    name = worker.ready()["id"]
    [done] = node_runs(wait_ran(r, 1))
    # Node's JSON.stringify of what it received, read back here: every value as sent.
    assert done["args"] == ROUND_TRIP_ARGS
    assert (done["class"], done["queue"], done["worker"]) == ("Record", "from_python", name)
    worker.wait_event("success")
    assert r.get(NS + "stat:processed") == b"1"


def _enqueue_delayed_from_node(node: str, redis_url: str) -> None:
    at_ms = int(time.time() * 1000) + 1500
    results, _ = node_queue(
        node, redis_url,
        {"op": "enqueueIn", "ms": 1000, "queue": "later", "class": "Record", "args": ["in", 1]},
        {"op": "enqueueAt", "at_ms": at_ms, "queue": "later", "class": "Record",
         "args": ["at", {"x": [2.5, None]}]})
    assert results == [True, True]


def _assert_delayed_state_clean(r: redis.Redis) -> None:
    """Nothing left of the delayed jobs: schedule, lists, node-resque's timestamps sets."""
    assert r.zcard(NS + "delayed_queue_schedule") == 0
    assert r.keys(NS + "delayed:*") == [] and r.keys(NS + "timestamps:*") == []


def test_node_delayed_jobs_moved_by_node_resque_scheduler_run_on_python(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn, spawn_node: SpawnNode
) -> None:
    spawn_worker("--queues", "later")
    _enqueue_delayed_from_node(node, redis_url)
    scheduler = spawn_node("scheduler.js")
    done = python_runs(wait_ran(r, 2))
    assert sorted(d["args"][0] for d in done) == ["at", "in"]
    assert {json.dumps(d["args"]) for d in done} == {
        json.dumps(["in", 1]), json.dumps(["at", {"x": [2.5, None]}])}
    assert len(scheduler.named("transferredJob")) == 2
    _assert_delayed_state_clean(r)


def test_node_delayed_jobs_moved_by_our_scheduler_run_on_python(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn
) -> None:
    _enqueue_delayed_from_node(node, redis_url)
    wait_due(r)
    spawn_worker("--queues", "later", "--scheduler")
    done = wait_ran(r, 2)
    assert sorted(json.dumps(d["args"]) for d in done) == sorted(
        [json.dumps(["in", 1]), json.dumps(["at", {"x": [2.5, None]}])])
    # Our scheduler removed node-resque's timestamps:<item> sets too: node-resque's
    # scheduledAt (and its DelayQueueLock plugin) no longer see the jobs as scheduled.
    _assert_delayed_state_clean(r)


def test_python_delayed_jobs_moved_by_node_resque_run_on_node(
    r: redis.Redis, spawn_node: SpawnNode
) -> None:
    client = Client(r)
    client.enqueue_in(1, "Record", "in", *ROUND_TRIP_ARGS, queue="node_later")
    client.enqueue_at(time.time() + 1, "Record", "at", {"k": [1, None]}, queue="node_later")
    worker = spawn_node("worker.js", "node_later")
    spawn_node("scheduler.js")
    done = node_runs(wait_ran(r, 2))
    by_first: dict[str, Any] = {d["args"][0]: d["args"][1:] for d in done}
    assert by_first == {"in": ROUND_TRIP_ARGS, "at": [{"k": [1, None]}]}
    worker.wait_event("success", 2)
    wait_until(lambda: r.zcard(NS + "delayed_queue_schedule") == 0, "an empty schedule")
    _assert_delayed_state_clean(r)


def test_node_resque_and_our_scheduler_together_move_each_job_once(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn, spawn_node: SpawnNode
) -> None:
    """Their masters do not exclude each other (node-resque's leader lock and
    resque-scheduler's master lock differ), yet no item is moved twice: node-resque pops
    items one by one, ours takes a batch in a transaction that fails if the list changed."""
    soon = int(time.time() * 1000) + 1000
    node_queue(node, redis_url, *[
        {"op": "enqueueAt", "at_ms": soon + 1000 * (n % 3), "queue": "both", "class": "Record",
         "args": [n]} for n in range(60)])
    Client(r).enqueue_in(1, "Record", "from python", queue="both")
    spawn_node("scheduler.js")
    spawn_worker("--queues", "both", "--scheduler")
    wait_ran(r, 61)
    wait_until(lambda: r.llen(NS + "queue:both") == 0
               and int(r.get(NS + "stat:processed") or 0) == len(ran(r)), "the queue drained")
    done = ran(r)
    assert sorted(json.dumps(d["args"]) for d in done) == sorted(
        [json.dumps([n]) for n in range(60)] + [json.dumps(["from python"])])
    _assert_delayed_state_clean(r)
