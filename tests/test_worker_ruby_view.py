"""What a running Python worker writes, read back by Ruby the way Resque and resque-web do.

`examples/ruby_client/resque_compat.rb` parses worker ids with `split(':')`, times with
`Time.parse` / `DateTime.parse` / `Time.iso8601`, and every value with Ruby's JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Callable

import pytest
import redis
from conftest import RUBY_CLIENT
from worker_helpers import NS, WorkerProc, wait_failures, wait_until

Spawn = Callable[..., WorkerProc]
pytestmark = pytest.mark.ruby


def ruby_check(ruby: str, redis_url: str, *args: str, tz: str = "UTC") -> list[dict[str, object]]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REDIS_URL": redis_url, "TZ": tz}
    proc = subprocess.run([ruby, str(RUBY_CLIENT / "resque_compat.rb"), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
def test_ruby_parses_a_working_python_worker_and_its_failures(
    r: redis.Redis, spawn_worker: Spawn, ruby: str, redis_url: str, tz: str
) -> None:
    worker = spawn_worker("--queues", "high,low", "--concurrency", "2", env={"TZ": tz})
    ids = worker.wait_registered(2)
    r.rpush(NS + "queue:high", '{"class":"Boom","args":["kaput"]}', '{"class":"Nope","args":[1]}',
            b"not json \xff", '{"class":"Hold","args":["ruby-view"]}')
    wait_failures(r, 3)
    held = wait_until(lambda: [w for w in ids if r.exists(NS + "worker:" + w)], "a running job")
    workers = {w["id"]: w for w in ruby_check(ruby, redis_url, "check-workers", tz=tz)}
    assert set(workers) == set(ids)
    busy = workers[held[0]]
    assert busy["state"] == "working" and busy["pid"] == worker.pid
    assert busy["payload_json"] == '{"class":"Hold","args":["ruby-view"]}'
    assert busy["queues"] == ["high", "low"]
    failures = ruby_check(ruby, redis_url, "check-failures", tz=tz)
    assert sorted(f["exception"] for f in failures) == [  # two slots: any order
        "NameError", "Resque::Helpers::DecodeException", "worker_jobs.JobError"]
    assert all(f["worker"] in ids and f["queue"] == "high" for f in failures)
    assert ruby_check(ruby, redis_url, "prune-check", "300") == [[]]
    stats = ruby_check(ruby, redis_url, "stats")[0]
    assert stats["failed"] == 3 and stats["workers"] == 2 and stats["working"] == 1
    r.set("test:release:ruby-view", 1)


def test_ruby_requeue_of_a_python_failure_is_worked_again(
    r: redis.Redis, spawn_worker: Spawn, ruby: str, redis_url: str
) -> None:
    worker = spawn_worker("--queues", "high")
    worker.wait_registered()
    r.rpush(NS + "queue:high", '{"class":"Boom","args":["once"]}')
    wait_failures(r, 1)
    ruby_check(ruby, redis_url, "requeue", "0")
    wait_until(lambda: r.llen(NS + "failed") == 2, "the requeued job to fail again")
    first, second = ruby_check(ruby, redis_url, "check-failures")
    assert first["retried_at"] and second["payload"] == {"class": "Boom", "args": ["once"]}
