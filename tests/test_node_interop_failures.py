"""Failures across languages: node-resque's in ``pyresque failed`` and the dashboard, ours in
node-resque's ``queue.failed()``, each retried from the other side."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Callable

import pytest
import redis
from admin_helpers import invoke, invoke_json
from node_helpers import NODE_DIR, NodeProc, node_call, node_queue, node_runs
from web_helpers import WsgiClient
from worker_helpers import NS, WorkerProc, failures, wait_failures, wait_ran

from pyresqueworker.client._client import Client
from pyresqueworker.protocol import wire
from pyresqueworker.web.app import make_app

Spawn = Callable[..., WorkerProc]
SpawnNode = Callable[..., NodeProc]
NODE_FAILURE_KEYS = ["worker", "queue", "payload", "exception", "error", "backtrace", "failed_at"]


@pytest.mark.parametrize("via", ["cli", "dashboard"])
def test_a_node_failure_shows_and_retries_from_pyresque(
    node: str, redis_url: str, r: redis.Redis, spawn_node: SpawnNode, via: str
) -> None:
    worker = spawn_node("worker.js", "nf")
    name = worker.ready()["name"]
    node_call(node, redis_url, "enqueue", queue="nf", **{"class": "Flaky"}, args=["é 🎉"])
    [entry] = wait_failures(r, 1)
    assert list(entry) == NODE_FAILURE_KEYS  # node-resque's own shape, not Resque's order
    assert (entry["worker"], entry["exception"]) == (name, "JobError")
    [row] = invoke_json(redis_url, "failed", "list")
    assert (row["index"], row["queue"], row["class"], row["exception"], row["error"]) == (
        0, "nf", "Flaky", "JobError", "not fixed yet: é 🎉")
    assert wire.parse_time(row["failed_at"]) is not None  # JavaScript's Date#toString
    table = invoke(redis_url, "failed", "list").stdout
    assert re.search(r"^\s+0\s+\d+s ago\s+nf\s+Flaky\s+JobError\s+not fixed yet", table, re.M)
    shown = invoke(redis_url, "failed", "show", "0").stdout
    assert "node_modules/node-resque/dist/core/worker.js" in shown

    r.set("test:fixed:é 🎉", 1)
    if via == "cli":
        assert invoke(redis_url, "failed", "retry", "0").exit_code == 0
    else:
        web = WsgiClient(make_app(Client(r)))
        body = web.get("/failed")[2]
        assert "Flaky" in body and "not fixed yet" in body and name in body
        status, _, _ = web.post("/action/failed/retry", web.form_fields(body, "retry-0"))
        assert status == "303 See Other"
    [done] = node_runs(wait_ran(r, 1))
    assert (done["class"], done["args"], done["queue"]) == ("Flaky", ["é 🎉"], "nf")
    [entry] = failures(r)
    assert wire.parse_time(entry["retried_at"]) is not None  # kept, marked, as resque-web does


def test_a_python_failure_shows_in_node_resque_and_retries_with_retry_and_remove_failed(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "pf")
    [worker_id] = worker.wait_registered()
    message = "kaput é 🎉 \u2028 {\"nested\": [1, 2.5, null]}"
    Client(r).enqueue_to("pf", "Boom", message)
    wait_failures(r, 1)
    [entry] = node_call(node, redis_url, "failed")
    assert entry["payload"] == {"class": "Boom", "args": [message]}
    assert (entry["exception"], entry["error"]) == ("worker_jobs.JobError", message)
    assert (entry["worker"], entry["queue"]) == (worker_id, "pf")
    assert entry["backtrace"][0].endswith("in `_explode'")
    assert node_call(node, redis_url, "failedCount") == 1

    # removeFailed finds the entry by JSON.stringify of what it parsed: our bytes, exactly.
    assert node_call(node, redis_url, "retryAndRemoveFailed", index=0) is True
    # Node's enqueue writes its own payload shape; the Python worker runs it again.
    [again] = wait_failures(r, 1)
    assert again["payload"] == {"class": "Boom", "queue": "pf", "args": [message]}
    assert r.get(NS + "stat:failed") == b"2"


def test_node_resque_cannot_retry_a_failure_it_would_re_encode_differently(
    node: str, redis_url: str, r: redis.Redis
) -> None:
    """JavaScript has one number type: 1.0 comes back from JSON.stringify as 1, so
    retryAndRemoveFailed (which LREMs its own re-encoding) misses the entry; pyresque's
    retry works on it."""
    entry = wire.failure_entry(
        failed_at_text=wire.failed_at(), payload={"class": "Boom", "args": [1.0, 1e20]},
        exception="ValueError", error="float args", backtrace=[], worker="h:1:pf", queue="pf")
    r.rpush(NS + "failed", entry)
    steps = json.dumps([{"op": "retryAndRemoveFailed", "index": 0}])
    proc = subprocess.run(
        [node, str(NODE_DIR / "queue.js"), redis_url.rsplit(":", 1)[1].split("/")[0], "resque",
         steps],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "This job is not in failed queue" in proc.stderr
    assert r.lrange(NS + "failed", 0, -1) == [entry.encode()]
    assert invoke(redis_url, "failed", "retry", "0").exit_code == 0
    assert r.lrange(NS + "queue:pf", 0, -1) == [b'{"class":"Boom","args":[1.0,1.0e+20]}']
    queued, _ = node_queue(node, redis_url, {"op": "queued", "queue": "pf"})
    assert queued == [[{"class": "Boom", "args": [1, 1e20]}]]
