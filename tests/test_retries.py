"""Retries with backoff, run by a real worker against a real redis-server (issue 6)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import redis
from worker_helpers import failures, ran, wait_failures, wait_ran, wait_until

from pyresqueworker import Client
from pyresqueworker.jobs.retry import Retry, retry_key_suffix
from pyresqueworker.worker.scheduler import Scheduler

APPS = ("--app", "feature_jobs", "--queues", "jobs")


def _client(r: redis.Redis) -> Client:
    return Client(r)


def test_a_flaky_job_is_retried_until_it_succeeds_and_its_counter_is_dropped(
    r: redis.Redis, spawn_worker: object
) -> None:
    client = _client(r)
    client.enqueue_to("jobs", "Flaky", "f1", 3)
    spawn_worker(*APPS)  # type: ignore[operator]
    runs = wait_ran(r, 3)
    assert [run["args"] for run in runs] == [["f1", 1], ["f1", 2], ["f1", 3]]
    counter = "resque:" + retry_key_suffix("Flaky", ["f1", 3])
    wait_until(lambda: not r.exists(counter), "the counter to go", timeout=5)
    assert failures(r) == []
    # Resque counts every failed attempt; only the last run succeeded.
    wait_until(lambda: r.get("resque:stat:processed") == b"3", "3 processed", timeout=5)
    assert r.get("resque:stat:failed") == b"2"
    # resque-retry's failure-<key> keeps the last failed attempt for its web tab.
    last_failure = json.loads(r.get("resque:failure-" + counter[len("resque:"):]) or b"{}")
    assert last_failure["error"] == "attempt 2 failed"
    assert last_failure["failed_at"].count("/") == 2 and "UTC" not in last_failure["failed_at"]


def test_out_of_retries_the_job_fails_once_with_its_attempt_count(
    r: redis.Redis, spawn_worker: object
) -> None:
    _client(r).enqueue_to("jobs", "AlwaysFails", "a1")
    spawn_worker(*APPS)  # type: ignore[operator]
    [entry] = wait_failures(r, 1)
    time.sleep(0.3)
    assert len(failures(r)) == 1
    assert len(ran(r)) == 3  # the first run and max=2 retries
    assert entry["attempts"] == 3
    assert entry["payload"] == {"class": "AlwaysFails", "args": ["a1"]}
    assert entry["exception"] == "worker_jobs.JobError"
    assert not r.exists("resque:" + retry_key_suffix("AlwaysFails", ["a1"]))


def test_fatal_exceptions_fail_at_once(r: redis.Redis, spawn_worker: object) -> None:
    _client(r).enqueue_to("jobs", "Fatal", "x")
    spawn_worker(*APPS)  # type: ignore[operator]
    [entry] = wait_failures(r, 1)
    assert entry["exception"] == "ValueError" and "attempts" not in entry
    time.sleep(0.3)
    assert len(ran(r)) == 1 and r.zcard("resque:delayed_queue_schedule") == 0


def test_an_enqueue_override_retries_a_class_without_a_policy(
    r: redis.Redis, spawn_worker: object
) -> None:
    _client(r).enqueue_to("jobs", "NoPolicy", "o1", retry=Retry(max=1, backoff="fixed", base=0))
    assert r.lrange("resque:queue:jobs", 0, -1) == [
        b'{"class":"NoPolicy","args":["o1"],"retry":{"max":1,"backoff":"fixed","base":0}}']
    spawn_worker(*APPS)  # type: ignore[operator]
    [entry] = wait_failures(r, 1)
    assert len(ran(r)) == 2 and entry["attempts"] == 2
    # The retried payload carried the override on, so the failure shows it too.
    assert entry["payload"]["retry"] == {"max": 1, "backoff": "fixed", "base": 0}


def test_a_delayed_retry_is_a_resque_scheduler_item_and_runs_when_due(
    r: redis.Redis, redis_url: str, spawn_worker: object, ruby: str
) -> None:
    client = _client(r)
    client.enqueue_to("jobs", "RetryLater", "later")
    worker = spawn_worker(*APPS)  # type: ignore[operator]
    wait_ran(r, 1)
    wait_until(lambda: r.zcard("resque:delayed_queue_schedule") == 1, "a delayed retry",
               timeout=5)
    [(_member, ts)] = r.zrange("resque:delayed_queue_schedule", 0, -1, withscores=True)
    assert abs(ts - (time.time() + 3600)) < 30
    item = '{"class":"RetryLater","args":["later"],"queue":"jobs"}'
    assert r.lrange(f"resque:delayed:{int(ts)}", 0, -1) == [item.encode()]
    assert failures(r) == []
    counter = "resque:" + retry_key_suffix("RetryLater", ["later"])
    assert r.get(counter) == b"0"  # resque-retry's value after the first failed attempt
    # Ruby reads it as resque-scheduler does: delayed? through the timestamps set.
    script = r"""
require "redis"; require "json"
r = Redis.new(url: ARGV[0])
item = JSON.generate({"class" => "RetryLater", "args" => ["later"], "queue" => "jobs"})
members = r.smembers("resque:timestamps:#{item}")
total = r.zrange("resque:delayed_queue_schedule", 0, -1).sum { |t| r.llen("resque:delayed:#{t}") }
puts JSON.generate([!members.empty?, members, total])
"""
    out = subprocess.run([ruby, "-e", script, redis_url], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [True, [f"delayed:{int(ts)}"], 1]
    # An hour later (an injected clock), the scheduler moves it; the worker runs it again,
    # and with max=1 that was the last attempt.
    assert Scheduler(client, clock=lambda: ts + 1).run_once() == 1
    [entry] = wait_failures(r, 1)
    assert entry["attempts"] == 2 and len(ran(r)) == 2
    assert not r.exists(counter)
    worker.stop()  # type: ignore[attr-defined]


@pytest.mark.ruby
def test_a_final_failure_is_retried_from_the_failed_list_like_resque_web(
    r: redis.Redis, spawn_worker: object
) -> None:
    client = _client(r)
    client.enqueue_to("jobs", "AlwaysFails", "again")
    spawn_worker(*APPS)  # type: ignore[operator]
    wait_failures(r, 1)
    client.requeue(0)  # what resque-web's Retry button does
    # The requeued job starts with a fresh counter: three more runs, a second failure.
    wait_failures(r, 2)
    assert len(ran(r)) == 6
    assert [f["attempts"] for f in failures(r)] == [3, 3]
