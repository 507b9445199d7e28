"""node-resque's plugins keep state in the same Redis: what each writes, and what Python does
about it (docs/ruby.md, "node-resque's plugins").

* ``QueueLock``: ``lock:<class>:<queue>:<args JSON>`` from enqueue until a node-resque worker
  starts the job. A Python worker releases it with
  :func:`pyresqueworker.contrib.node_resque.release_queue_locks`; without it the lock stands
  until its ``lockTimeout`` (an hour by default) and node-resque drops re-enqueues meanwhile.
* ``DelayQueueLock``: no key of its own; it reads ``timestamps:<item>``, which our scheduler
  clears when it moves the item.
* ``JobLock`` and ``Retry``: keys written and removed by node-resque workers only.
"""

from __future__ import annotations

import json
from typing import Callable

import pytest
import redis
from node_helpers import NODE_DIR, NodeProc, node_queue, node_runs, wait_due
from worker_helpers import NS, WorkerProc, wait_ran, wait_until

from pyresqueworker.contrib.node_resque import queue_lock_key
from pyresqueworker.protocol.job import Job

Spawn = Callable[..., WorkerProc]
SpawnNode = Callable[..., NodeProc]
ARGS = [7, "é \u2028 🎉", {"n": [2.5, None]}]
LOCK = NS + 'lock:Record:locked:[7,"é \u2028 🎉",{"n":[2.5,null]}]'


def enqueue_locked(node: str, redis_url: str) -> bool:
    (accepted,), errors = node_queue(node, redis_url, {
        "op": "enqueue", "queue": "locked", "class": "Record", "args": ARGS,
        "plugins": ["QueueLock"]})
    assert errors == []
    return bool(accepted)


@pytest.mark.parametrize("release", [True, False], ids=["with-middleware", "without"])
def test_a_queue_lock_taken_by_node_resque_is_released_when_python_runs_the_job(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn, release: bool
) -> None:
    assert enqueue_locked(node, redis_url)
    assert r.ttl(LOCK.encode()) > 3500  # the plugin's default lockTimeout: one hour
    assert not enqueue_locked(node, redis_url)  # node-resque drops the duplicate
    apps = ("--app", str(NODE_DIR / "release_queue_locks.py")) if release else ()
    spawn_worker("--queues", "locked", *apps)
    [done] = wait_ran(r, 1)
    assert done["args"] == ARGS
    if release:
        assert not r.exists(LOCK)
        assert enqueue_locked(node, redis_url)  # the same job can be queued again at once
        wait_ran(r, 2)
    else:
        assert r.exists(LOCK) and not enqueue_locked(node, redis_url)


def test_our_scheduler_clears_what_node_resque_delay_queue_lock_reads(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn
) -> None:
    step = {"queue": "dq", "class": "Record", "args": ["once"]}
    locked = {"op": "enqueue", **step, "plugins": ["DelayQueueLock"]}
    (scheduled, refused, at), _ = node_queue(
        node, redis_url, {"op": "enqueueIn", "ms": 1000, **step}, locked,
        {"op": "scheduledAt", **step})
    assert (scheduled, refused, len(at)) == (True, False, 1)
    wait_due(r)
    spawn_worker("--queues", "elsewhere", "--scheduler")
    wait_until(lambda: r.llen(NS + "queue:dq") == 1, "our scheduler moving the job")
    (accepted, at), _ = node_queue(node, redis_url, locked, {"op": "scheduledAt", **step})
    assert (accepted, at) == (True, [])


def test_job_lock_and_retry_keys_are_node_resque_workers_own(
    r: redis.Redis, spawn_node: SpawnNode
) -> None:
    plugins = {"Hold": {"plugins": ["JobLock"]},
               "Flaky": {"plugins": ["Retry"],
                         "pluginOptions": {"Retry": {"retryLimit": 3, "retryDelay": 60000}}}}
    worker = spawn_node("worker.js", "plug", json.dumps(plugins))
    worker.ready()
    r.rpush(NS + "queue:plug", '{"class":"Hold","queue":"plug","args":["jl"]}',
            '{"class":"Flaky","queue":"plug","args":["rt"]}')
    job_lock = NS + 'workerslock:Hold:plug:["jl"]'
    wait_until(lambda: r.exists(job_lock), "JobLock's key while the job runs")
    assert r.ttl(job_lock) > 3500
    r.set("test:release:jl", 1)
    assert node_runs(wait_ran(r, 1))
    wait_until(lambda: not r.exists(job_lock), "JobLock's release")
    # Retry: an attempt counter and the last error, both expiring, and a delayed re-enqueue.
    wait_until(lambda: r.exists(NS + "failure-resque-retry:Flaky:rt"), "Retry's keys")
    assert r.get(NS + "resque-retry:Flaky:rt") == b"0"
    last = json.loads(r.get(NS + "failure-resque-retry:Flaky:rt") or b"")
    assert (last["payload"], last["worker"], last["queue"]) == (["rt"], "Flaky", "plug")
    assert r.ttl(NS + "resque-retry:Flaky:rt") > 0  # the delay in ms, taken as seconds
    assert r.lrange(NS + "failed", 0, -1) == []
    [item] = r.lrange(r.keys(NS + "delayed:*")[0], 0, -1)
    assert json.loads(item) == {"class": "Flaky", "queue": "plug", "args": ["rt"]}


@pytest.mark.parametrize(("raw", "key"), [
    (b'{"class":"A","queue":"q","args":[1,"\\u00e9",null]}', 'resque:lock:A:q:[1,"\\u00e9",null]'),
    (b'{"class":"A","queue":"other","args":[]}', "resque:lock:A:q:[]"),  # the queue it ran from
    (b'{"class":"A","args":[1]}', None),  # Ruby's and ours
    (b'{"class":"A","args":[1],"queue":"q"}', None),  # resque-scheduler's delayed item order
    (b'{"class":"A","queue":"q","args":{"a":1}}', None),
    (b'{"class":1,"queue":"q","args":[]}', None),
    (b'{"class":"A","queue":"q","args":[1]', None),
    (b'\xff{"class":"A","queue":"q","args":[]}', None),
])
def test_queue_lock_key_is_named_from_the_queued_bytes(raw: bytes, key: str | None) -> None:
    assert queue_lock_key(Job(queue="q", raw=raw), "resque:") == key
