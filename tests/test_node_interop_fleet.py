"""One fleet view: node-resque, Python (and Ruby) workers on one Redis, each seen by the others.

node-resque lists workers from the ``workers`` set (``queue.workers()``) and reads their jobs
from ``worker:<id>`` (``queue.allWorkingOn()``); ``pyresque workers``, the dashboard and the
metrics read the same keys. node-resque's ``allWorkingOn`` files a job under the ``worker``
field of its worker key, a field only node-resque writes: Ruby's and Python's jobs show under
``"undefined"`` and their workers as ``"started"`` (docs/ruby.md, "Node").
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from typing import Any, Callable

import pytest
import redis
from admin_helpers import invoke, invoke_json
from conftest import RUBY_CLIENT
from node_helpers import NS, NodeProc, RubyWorker, node_queue, node_runs
from web_helpers import WsgiClient
from worker_helpers import WorkerProc, wait_failures, wait_ran, wait_started, wait_until

from pyresqueworker.client._client import Client
from pyresqueworker.protocol import wire
from pyresqueworker.web.app import make_app
from pyresqueworker.worker._metrics_redis import RedisCollector

Spawn = Callable[..., WorkerProc]
SpawnNode = Callable[..., NodeProc]
HOST = socket.gethostname()


def node_name(worker_id: str) -> str:
    """node-resque's name of a worker (``host:pid``): the id less its queues."""
    return worker_id.rsplit(":", 1)[0]


def metrics(r: redis.Redis) -> dict[str, float]:
    collector = RedisCollector(r, wire.Keys(NS))
    return {s.name: s.value for family in collector.collect() for s in family.samples
            if not s.labels}


def test_node_resque_lists_a_working_python_worker(
    node: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "py_a,py_b")
    [worker_id] = worker.wait_registered()
    Client(r).enqueue_to("py_a", "Hold", "node-view")
    payload = wire.encode_job("Hold", ["node-view"])  # what it wrote (the worker takes it at once)
    wait_started(r)
    (workers, working), errors = node_queue(node, redis_url, {"op": "workers"},
                                            {"op": "allWorkingOn"})
    assert errors == []
    assert workers == {node_name(worker_id): "py_a,py_b"}
    assert working[node_name(worker_id)] == "started"
    job = working["undefined"]  # no "worker" field in a Resque worker key (Ruby's neither)
    assert (job["queue"], job["payload"]) == ("py_a", json.loads(payload))
    assert wire.parse_time(job["run_at"]) is not None
    r.set("test:release:node-view", 1)
    wait_ran(r, 1)
    (working,), _ = node_queue(node, redis_url, {"op": "allWorkingOn"})
    assert working == {node_name(worker_id): "started"}


def test_node_resque_workers_show_in_pyresque_the_dashboard_and_metrics(
    node: str, redis_url: str, r: redis.Redis, spawn_node: SpawnNode
) -> None:
    worker = spawn_node("worker.js", "nq,nq2")
    ready = worker.ready()
    node_queue(node, redis_url,
               {"op": "enqueue", "queue": "nq", "class": "Boom", "args": ["from node"]},
               {"op": "enqueue", "queue": "nq", "class": "Hold", "args": ["shown"]})
    wait_failures(r, 1)
    wait_started(r)
    [row] = invoke_json(redis_url, "workers")
    assert (row["id"], row["host"], row["pid"], row["queues"]) == (
        ready["id"], HOST, ready["pid"], ["nq", "nq2"])
    assert row["state"] == "working" and row["job"]["class"] == "Hold"
    assert row["heartbeat"] is None  # node-resque pings worker:ping:<name> instead
    assert wire.parse_time(row["started"]) is not None  # epoch seconds
    # RUNNING comes from node-resque's run_at (JavaScript's Date#toString).
    text = invoke(redis_url, "workers").stdout
    assert re.search(rf"^{re.escape(ready['id'])}\s+{HOST}\s+{ready['pid']}\s+nq,nq2\s+"
                     r"working\s+Hold\s+nq\s+\d+s\s+-\s*$", text, re.M), text
    info = invoke_json(redis_url, "info")
    assert (info["workers"], info["working"], info["failed"]) == (1, 1, 1)
    web = WsgiClient(make_app(Client(r)))
    body = web.get("/workers")[2]
    assert ready["id"] in body and "Hold" in body and "working" in body
    body = web.get("/failed")[2]
    assert "JobError" in body and "from node" in body
    seen = metrics(r)
    assert (seen["pyresque_workers"], seen["pyresque_failed_jobs"]) == (1, 1)
    r.set("test:release:shown", 1)
    wait_ran(r, 1)


def ruby_view(ruby: str, redis_url: str) -> list[dict[str, Any]]:
    """What Resque.workers and Resque.working see: each id as Worker.find splits it, and the
    class of the job its worker key holds."""
    code = (
        'c = ResqueCompat::Client.new; r = c.redis; '
        'r.smembers(c.key("workers")).sort.each { |id| '
        'raw = r.get(c.key("worker:#{id}")); '
        'job = raw && !raw.empty? ? ResqueCompat.decode(raw)["payload"]["class"] : nil; '
        'puts JSON.generate(ResqueCompat.parse_worker_id(id).merge("id" => id, "job" => job)) }'
    )
    env = {"REDIS_URL": redis_url, "RESQUE_NAMESPACE": NS, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([ruby, "-r", str(RUBY_CLIENT / "resque_compat.rb"), "-e", code],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.ruby
def test_ruby_node_and_python_workers_on_one_redis_see_all_three(
    node: str, ruby: str, redis_url: str, r: redis.Redis, spawn_worker: Spawn,
    spawn_node: SpawnNode
) -> None:
    rubyist = RubyWorker(ruby, redis_url, "ruby_q")
    try:
        node_worker = spawn_node("worker.js", "node_q")
        python_worker = spawn_worker("--queues", "python_q")
        ids = {"ruby": rubyist.id, "node": node_worker.ready()["id"],
               "python": python_worker.wait_registered()[0]}
        client = Client(r)
        for lang in ids:
            client.enqueue_to(f"{lang}_q", "Hold", f"three-{lang}")
        started = wait_started(r, 3)
        assert sorted(s.get("runtime", "python") for s in started) == ["node", "python", "ruby"]

        # Python: pyresque workers (and so the dashboard, which reads the same).
        rows = {row["id"]: row for row in invoke_json(redis_url, "workers")}
        assert set(rows) == set(ids.values())
        assert all(row["state"] == "working" and row["job"]["class"] == "Hold"
                   for row in rows.values())
        assert invoke_json(redis_url, "info")["working"] == 3
        body = WsgiClient(make_app(client)).get("/workers")[2]
        assert all(worker_id in body for worker_id in ids.values())
        # Ruby: Resque.workers / Resque.working.
        view = ruby_view(ruby, redis_url)
        assert {w["id"] for w in view} == set(ids.values())
        assert all(w["job"] == "Hold" and w["host"] == HOST for w in view)
        # Node: queue.workers() lists all three; allWorkingOn files its own job by name.
        (workers, working), _ = node_queue(node, redis_url, {"op": "workers"},
                                           {"op": "allWorkingOn"})
        assert workers == {node_name(i): i.rsplit(":", 1)[1] for i in ids.values()}
        assert working[node_name(ids["node"])]["payload"]["args"] == ["three-node"]
        assert working[node_name(ids["ruby"])] == working[node_name(ids["python"])] == "started"
        assert working["undefined"]["payload"]["args"][0] in ("three-ruby", "three-python")

        for lang in ids:
            r.set(f"test:release:three-{lang}", 1)
        done = wait_ran(r, 3)
        assert sorted(d["queue"] for d in done) == ["node_q", "python_q", "ruby_q"]
        assert len(node_runs(done)) == 1
        assert rubyist.stop() == 0
        wait_until(lambda: len(invoke_json(redis_url, "workers")) == 2, "Ruby's unregistering")
    finally:
        rubyist.kill()
