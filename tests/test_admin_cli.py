"""The ``pyresque`` admin CLI: info, queues, workers, enqueue, delayed, pauses, prune, options
and errors, against a real Redis holding data written by Ruby, by our client and by a worker."""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime, timezone
from typing import Callable

import pytest
import redis
from admin_helpers import (
    RUBY_WORKER,
    golden_failures,
    invoke,
    invoke_json,
    one_error_line,
    run_script,
    server_now,
)
from conftest import GOLDEN, load_worker_state
from worker_helpers import WorkerProc, wait_started

from pyresqueworker.cli.admin.cli import ALL_PAUSED
from pyresqueworker.client._client import Client
from pyresqueworker.jobs.activejob import JOB_WRAPPER
from pyresqueworker.protocol import wire

SECRET = "s3cret-Pa55"
Spawn = Callable[..., WorkerProc]


# -- info -------------------------------------------------------------------------------------


def test_info_reads_what_a_ruby_worker_left(redis_url: str, r: redis.Redis,
                                            client: Client) -> None:
    load_worker_state(r)
    client.enqueue_to("high", "Archive", 35, "tar")
    client.enqueue_in(600, "Later", queue="low")
    client.pause_queue("low")
    data = invoke_json(redis_url, "info")
    assert list(data) == ["pending", "processed", "failed", "queues", "workers", "working",
                          "delayed", "all_paused", "paused_queues", "namespace", "servers",
                          "environment"]
    assert (data["pending"], data["processed"], data["failed"]) == (1, 2, 2)
    assert (data["queues"], data["workers"], data["working"], data["delayed"]) == (2, 1, 1, 1)
    assert (data["all_paused"], data["paused_queues"], data["namespace"]) == (False, ["low"],
                                                                              "resque:")
    text = invoke(redis_url, "info").stdout
    assert re.search(r"^workers\s+1 \(1 working\)$", text, re.M)
    assert re.search(r"^paused\s+low$", text, re.M)
    client.pause_all()
    assert re.search(r"^paused\s+all workers", invoke(redis_url, "info").stdout, re.M)


# -- queues -----------------------------------------------------------------------------------


def active_job_enqueued(r: redis.Redis, queue: str, seconds_ago: int) -> None:
    """A Rails-shaped JobWrapper payload whose enqueued_at lies ``seconds_ago`` in the past."""
    when = datetime.fromtimestamp(server_now(r) - seconds_ago, timezone.utc)
    data = {"job_class": "HelloJob", "job_id": "j-1", "queue_name": queue, "arguments": [],
            "enqueued_at": when.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")}
    Client(r).enqueue_to(queue, JOB_WRAPPER, data)


def test_queues_size_pause_and_latency(redis_url: str, r: redis.Redis, client: Client) -> None:
    active_job_enqueued(r, "mail", 125)
    client.enqueue_to("mail", "Plain", 1)
    client.enqueue_to("high", "Archive", 35)
    r.sadd("resque:queues", "empty")
    client.pause_queue("high")
    rows = invoke_json(redis_url, "queues")
    assert [row["name"] for row in rows] == ["empty", "high", "mail"]
    assert all(list(row) == ["name", "size", "paused", "all_paused", "latency",
                             "oldest_enqueued_at"] for row in rows)
    empty, high, mail = rows
    assert (empty["size"], empty["latency"], empty["oldest_enqueued_at"]) == (0, None, None)
    assert (high["size"], high["paused"], high["latency"]) == (1, True, None)
    assert mail["size"] == 2 and mail["paused"] is False
    assert mail["oldest_enqueued_at"].endswith(".123456789Z")
    assert 124 <= mail["latency"] < 130
    lines = invoke(redis_url, "queues").stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "SIZE", "PAUSED", "LATENCY"]
    assert lines[2].split() == ["high", "1", "yes", "-"]
    # Enqueued 125 s before "now" (with a fractional second), shown floored: 2m 4s to 2m 9s.
    assert lines[3].split()[:2] == ["mail", "2"] and re.search(r"2m [4-9]s$", lines[3])
    assert len(lines) == 4
    client.pause_all()
    assert "all workers are paused" in invoke(redis_url, "queues").stdout
    assert invoke_json(redis_url, "queues")[0]["all_paused"] is True


def test_queues_when_there_are_none(redis_url: str) -> None:
    assert invoke(redis_url, "queues").stdout == "no queues\n"
    assert invoke_json(redis_url, "queues") == []


# -- workers ----------------------------------------------------------------------------------


def test_workers_shows_a_ruby_worker_busy_with_its_job(redis_url: str, r: redis.Redis) -> None:
    load_worker_state(r)
    now = server_now(r)
    heartbeat = wire.heartbeat_value(now - 90)
    r.hset("resque:workers:heartbeat", RUBY_WORKER, heartbeat)
    run_at = datetime.fromtimestamp(now - 3725, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    r.set(f"resque:worker:{RUBY_WORKER}",
          wire.dumps({"queue": "low", "run_at": run_at,
                      "payload": {"class": "RubySlow", "args": [2]}}))
    [row] = invoke_json(redis_url, "workers")
    assert row == {
        "id": RUBY_WORKER, "host": "vm", "pid": 30579, "queues": ["high", "low"],
        "state": "working", "started": "2026-11-23 07:35:33 +0000", "heartbeat": heartbeat,
        "processed": 2, "failed": 2,
        "job": {"queue": "low", "class": "RubySlow", "run_at": run_at,
                "payload": {"class": "RubySlow", "args": [2]}},
    }
    header, line = invoke(redis_url, "workers").stdout.splitlines()
    assert header.split() == ["WORKER", "HOST", "PID", "QUEUES", "STATE", "JOB", "FROM",
                              "RUNNING", "HEARTBEAT"]
    assert line.split()[:7] == [RUBY_WORKER, "vm", "30579", "high,low", "working", "RubySlow",
                                "low"]
    assert re.search(r"1h 2m\s+1m ago$", line), line


def test_workers_lists_a_live_python_worker_and_its_job(redis_url: str, r: redis.Redis,
                                                        spawn_worker: Spawn) -> None:
    worker = spawn_worker("--queues", "admin_q")
    [worker_id] = worker.wait_registered()
    assert invoke(redis_url, "enqueue", "Hold", '["t1"]', "--queue", "admin_q").exit_code == 0
    wait_started(r)
    try:
        [row] = invoke_json(redis_url, "workers")
        assert (row["id"], row["pid"], row["host"]) == (worker_id, worker.pid,
                                                        socket.gethostname())
        assert (row["state"], row["queues"]) == ("working", ["admin_q"])
        assert row["job"]["class"] == "Hold" and row["job"]["queue"] == "admin_q"
        assert row["job"]["payload"] == {"class": "Hold", "args": ["t1"]}
        assert wire.parse_time(row["heartbeat"]) is not None
        line = invoke(redis_url, "workers").stdout.splitlines()[1]
        assert " working " in line and " Hold " in line and line.endswith("ago")
    finally:
        r.set("test:release:t1", "1")


def test_workers_when_there_are_none(redis_url: str) -> None:
    assert invoke(redis_url, "workers").stdout == "no workers\n"


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_writes_the_bytes_ruby_resque_writes(redis_url: str, r: redis.Redis) -> None:
    with open(GOLDEN / "enqueue-oj.json", encoding="utf-8") as handle:
        golden = json.load(handle)
    for case, data in golden.items():
        # the arguments as a script would write them (Python's JSON, not Ruby's)
        args_json = json.dumps(json.loads(data["bytes"])["args"])
        result = invoke(redis_url, "enqueue", "Golden::Job", args_json, "--queue", case)
        assert result.exit_code == 0, result.stderr
        assert r.lrange(f"resque:queue:{case}", 0, -1) == [data["bytes"].encode()], case
    assert r.smembers("resque:queues") == {case.encode() for case in golden}


def test_enqueue_prints_the_item_and_json(redis_url: str, r: redis.Redis) -> None:
    result = invoke(redis_url, "enqueue", "Archive", '[35, "tar"]', "-q", "high")
    assert result.stdout == 'enqueued to high: {"class":"Archive","args":[35,"tar"]}\n'
    assert invoke_json(redis_url, "enqueue", "Ping", "--queue", "low") == {
        "queue": "low", "class": "Ping", "args": [], "item": '{"class":"Ping","args":[]}'}
    assert r.llen("resque:queue:high") == 1 and r.llen("resque:queue:low") == 1


@pytest.mark.parametrize(("args_json", "mentions"), [
    ("[1,", "not valid JSON"),
    ('{"a": 1}', "must be a JSON array"),
    ('"text"', "must be a JSON array"),
    ("[NaN]", "NaN"),
])
def test_enqueue_refuses_bad_arguments(redis_url: str, r: redis.Redis, args_json: str,
                                       mentions: str) -> None:
    result = invoke(redis_url, "enqueue", "Job", args_json, "--queue", "q")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "ARGS_JSON" in line and mentions in line
    assert r.keys("*") == []


def test_enqueue_needs_a_queue(redis_url: str) -> None:
    result = invoke(redis_url, "enqueue", "Job", "[]")
    assert result.exit_code == 2 and "--queue" in one_error_line(result.stderr)


# -- delayed ----------------------------------------------------------------------------------


def test_delayed_list(redis_url: str, r: redis.Redis, client: Client) -> None:
    now = server_now(r)
    client.enqueue_at(now + 300, "Later", 1, queue="low")
    client.enqueue_at(now + 300, "Later", 2, queue="low")
    client.enqueue_at(now + 7200, "Report", {"x": "\x1b[31m"}, queue="reports")
    r.rpush(f"resque:delayed:{now + 7200}", "not json")
    rows = invoke_json(redis_url, "delayed", "list")
    assert rows == [
        {"timestamp": now + 300, "time": wire_time(now + 300), "count": 2,
         "items": [{"class": "Later", "args": [1], "queue": "low"},
                   {"class": "Later", "args": [2], "queue": "low"}]},
        {"timestamp": now + 7200, "time": wire_time(now + 7200), "count": 2,
         "items": [{"class": "Report", "args": [{"x": "\x1b[31m"}], "queue": "reports"},
                   "not json"]},
    ]
    assert invoke_json(redis_url, "delayed", "list", "--limit", "1", "--items", "0") == [
        {"timestamp": now + 300, "time": wire_time(now + 300), "count": 2, "items": []}]
    lines = invoke(redis_url, "delayed", "list", "--items", "1").stdout.splitlines()
    assert lines[0].split() == ["TIMESTAMP", "TIME", "DUE", "COUNT", "JOBS"]
    assert re.search(r"in [45]m\s+2\s+Later\(1\) on low; \+1 more$", lines[1]), lines[1]
    # the escape sequence from Redis reaches the terminal escaped, never raw
    assert "\x1b" not in lines[2] and "\\u001b" in lines[2]


def wire_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_delayed_list_empty(redis_url: str) -> None:
    assert invoke(redis_url, "delayed", "list").stdout == "no delayed jobs\n"


# -- pause ------------------------------------------------------------------------------------


def test_pause_and_unpause(redis_url: str, r: redis.Redis, client: Client) -> None:
    client.enqueue_to("mail", "Mailer", 1)  # a queue that exists (see test_admin_visibility)
    assert "paused queue mail" in invoke(redis_url, "pause", "mail").stdout
    assert client.paused_queues() == ["mail"] and not client.all_paused()
    assert "paused all workers" in invoke(redis_url, "pause").stdout
    assert r.get("resque:pause-all-workers") == b"true"
    assert invoke_json(redis_url, "unpause") == {"queue": None, "paused": False, "changed": True}
    assert not client.all_paused() and client.paused_queues() == ["mail"]
    assert invoke_json(redis_url, "unpause", "mail") == {"queue": "mail", "paused": False,
                                                         "changed": True}
    assert client.paused_queues() == []


def test_pause_and_unpause_say_when_nothing_changed(redis_url: str, client: Client) -> None:
    client.enqueue_to("mail", "Mailer", 1)
    for args, said in [
            (["unpause", "mail"], "queue mail was not paused (nothing changed)"),
            (["unpause"], "workers were not paused (pause-all-workers was not set; nothing "
                          "changed)"),
            (["pause", "mail"], "paused queue mail"),
            (["pause", "mail"], "queue mail was already paused (nothing changed)"),
            (["pause"], "paused all workers"),
            (["pause"], "all workers were already paused (pause-all-workers was set; nothing "
                        "changed)")]:
        result = invoke(redis_url, *args)
        assert result.exit_code == 0, result.stderr  # the state asked for is the state there
        assert result.stdout.startswith(said), (args, result.stdout)
    assert client.paused_queues() == ["mail"] and client.all_paused()
    assert invoke_json(redis_url, "pause", "mail") == {"queue": "mail", "paused": True,
                                                       "changed": False}
    # Resuming a queue while every worker is paused resumes nothing yet: it says so.
    result = invoke(redis_url, "unpause", "mail")
    assert result.stdout.splitlines() == ["unpaused queue mail", ALL_PAUSED]
    assert invoke_json(redis_url, "unpause", "mail") == {"queue": "mail", "paused": False,
                                                         "changed": False}
    assert invoke_json(redis_url, "unpause") == {"queue": None, "paused": False, "changed": True}


# -- prune ------------------------------------------------------------------------------------


DEAD = "elsewhere:4242:high"


def dead_worker(r: redis.Redis, heartbeat_age: int) -> None:
    """A worker on another host whose heartbeat is ``heartbeat_age`` seconds old, mid-job."""
    r.sadd("resque:workers", DEAD)
    r.set(f"resque:worker:{DEAD}", wire.worker_value("high", "2026-11-23T07:00:00Z",
                                                     '{"class":"Archive","args":[7]}'))
    r.hset("resque:workers:heartbeat", DEAD, wire.heartbeat_value(server_now(r) - heartbeat_age))
    r.rpush("resque:queue:high", '{"class":"Other","args":[]}')


def test_prune_recovers_a_dead_workers_job(redis_url: str, r: redis.Redis) -> None:
    dead_worker(r, 400)
    assert invoke_json(redis_url, "prune", "--dry-run") == {
        "pruned": [{"worker": DEAD, "outcome": "dead"}], "heartbeats_checked": True,
        "dry_run": True}
    assert r.sismember("resque:workers", DEAD)  # a dry run changes nothing
    result = invoke(redis_url, "prune")
    assert result.exit_code == 0, result.stderr
    assert re.search(rf"^{re.escape(DEAD)}\s+requeued$", result.stdout, re.M)
    assert "pruned 1 dead worker\n" in result.stdout
    assert not r.sismember("resque:workers", DEAD)
    assert r.lindex("resque:queue:high", 0) == b'{"class":"Archive","args":[7]}'  # at the front


def test_prune_leaves_live_workers_and_can_fail_the_job(redis_url: str, r: redis.Redis) -> None:
    dead_worker(r, 100)
    assert invoke_json(redis_url, "prune")["pruned"] == []
    assert invoke_json(redis_url, "prune", "--prune-after", "50", "--force",
                       "--on-dead-worker", "fail")["pruned"] == [
        {"worker": DEAD, "outcome": "failed"}]
    entry = json.loads(r.lindex("resque:failed", 0) or b"")
    assert entry["exception"] == "Resque::PruneDeadWorkerDirtyExit"
    assert entry["worker"] == DEAD and entry["payload"] == {"class": "Archive", "args": [7]}


def test_prune_honours_the_prune_lock_unless_forced(redis_url: str, r: redis.Redis) -> None:
    dead_worker(r, 400)
    r.set("resque:pruning_dead_workers_in_progress", "ruby:1:high", ex=60)
    result = invoke(redis_url, "prune")
    assert "pruned 0 dead workers" in result.stdout
    assert "prune lock is held by ruby:1:high" in result.stdout
    assert r.sismember("resque:workers", DEAD)
    assert invoke_json(redis_url, "prune", "--force")["pruned"] == [
        {"worker": DEAD, "outcome": "requeued"}]


# -- connection options, namespaces, errors ---------------------------------------------------


def test_namespace_before_or_after_the_subcommand(redis_url: str, r: redis.Redis) -> None:
    Client(r, namespace="staging").enqueue_to("mail", "Job", 1)
    Client(r).enqueue_to("other", "Job", 1)
    assert [q["name"] for q in invoke_json(redis_url, "--namespace", "staging:", "queues")] == [
        "mail"]
    assert [q["name"] for q in invoke_json(redis_url, "queues", "--namespace", "staging")] == [
        "mail"]
    assert [q["name"] for q in invoke_json(redis_url, "queues")] == ["other"]
    env = {"PYRESQUE_NAMESPACE": "staging"}
    result = invoke(redis_url, "--json", "queues", env=env)
    assert [q["name"] for q in json.loads(result.stdout)] == ["mail"]


def test_redis_option_after_the_subcommand_and_from_the_environment(redis_url: str,
                                                                    r: redis.Redis) -> None:
    r.rpush("resque:failed", *golden_failures())
    result = invoke(None, "info", "--json", "--redis", redis_url)
    assert json.loads(result.stdout)["failed"] == 2
    result = invoke(None, "--json", "info", env={"REDIS_URL": redis_url})
    assert json.loads(result.stdout)["failed"] == 2


@pytest.mark.parametrize("args", [["info"], ["queues", "--json"], ["failed", "list"],
                                  ["failed", "retry-all"], ["pause"], ["prune"]])
def test_unreachable_redis_is_one_line_and_exit_1(args: list[str]) -> None:
    result = invoke(f"redis://:{SECRET}@127.0.0.1:1/0", *args)
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in line
    assert SECRET not in result.stderr + result.stdout


def test_bad_input_is_one_line_and_exit_2(redis_url: str) -> None:
    for args in (["nosuch"], ["failed", "show", "x"], ["failed", "retry"],
                 ["--redis", "http://nope/", "info"], ["queues", "--namespace", ""]):
        result = invoke(redis_url, *args)
        assert result.exit_code == 2, (args, result.stderr)
        one_error_line(result.stderr)


def test_a_wrong_type_key_is_a_redis_error_not_a_traceback(redis_url: str,
                                                           r: redis.Redis) -> None:
    r.set("resque:failed", "not a list")
    result = invoke(redis_url, "failed", "list")
    assert result.exit_code == 1
    assert "answered with an error: ResponseError: WRONGTYPE" in one_error_line(result.stderr)


def test_no_subcommand_prints_help(redis_url: str) -> None:
    result = invoke(redis_url)
    assert result.exit_code == 0 and "Commands:" in result.stdout and "retry" not in result.stderr


# -- the real program -------------------------------------------------------------------------


def test_console_script_reads_redis_url_and_prints_json(redis_url: str, r: redis.Redis) -> None:
    load_worker_state(r)
    proc = run_script("--json", "info", redis_url=redis_url)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["workers"] == 1
    proc = run_script("failed", "list", "--redis", redis_url, module=True)
    assert proc.returncode == 0, proc.stderr
    assert "NoSuchClass" in proc.stdout and "RubyBoom" in proc.stdout


def test_console_script_errors_are_one_line(redis_url: str) -> None:
    proc = run_script("queues", redis_url=f"redis://:{SECRET}@127.0.0.1:1/0")
    assert proc.returncode == 1
    assert "cannot reach Redis" in one_error_line(proc.stderr) and SECRET not in proc.stderr
    proc = run_script("enqueue", "Job", "{", "-q", "q", redis_url=redis_url, module=True)
    assert proc.returncode == 2 and "ARGS_JSON" in one_error_line(proc.stderr)
