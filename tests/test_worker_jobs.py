"""Jobs through a real ``pyresque-work``: results, failures, bad payloads, queue order, pauses,
and what an idle worker costs Redis (spec §5, §6, §7.3, §9, §10.1, §14)."""

from __future__ import annotations

import json
import re
import signal
import time
from typing import Callable

import pytest
import redis
from worker_helpers import (
    BACKTRACE_LINE_RE,
    FAILED_AT_RE,
    FAILURE_KEYS,
    NS,
    RUN_AT_RE,
    WorkerProc,
    count_commands,
    failures,
    ran,
    wait_failures,
    wait_ran,
    wait_started,
    wait_until,
)

Spawn = Callable[..., WorkerProc]


def stat(r: redis.Redis, name: str) -> int:
    return int(r.get(NS + "stat:" + name) or 0)


def test_a_job_pushed_the_ruby_way_is_performed(r: redis.Redis, spawn_worker: Spawn) -> None:
    worker = spawn_worker("--queues", "high,low")
    [worker_id] = worker.wait_registered()
    r.rpush(NS + "queue:high", '{"class":"MyClass","args":["hi","there"]}')
    [done] = wait_ran(r, 1)
    assert done == {"class": "MyClass", "args": ["hi", "there"], "queue": "high",
                    "worker": worker_id, "pid": worker.pid}
    wait_until(lambda: stat(r, "processed") == 1, "stat:processed")
    assert stat(r, f"processed:{worker_id}") == 1
    assert r.get(NS + f"worker:{worker_id}") is None
    assert r.llen(NS + "queue:high") == 0 and failures(r) == []


def test_failure_entry_has_resques_shape_and_both_counters_move(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "q")
    [worker_id] = worker.wait_registered()
    pushed = b'{"class":"Boom","args":["kaput"],"extra":{"k":[1, 2.5]}}'
    r.rpush(NS + "queue:q", pushed, '{"class":"Record","args":[]}')
    wait_ran(r, 1)
    wait_until(lambda: stat(r, "processed") == 2, "both jobs counted")

    [raw] = r.lrange(NS + "failed", 0, -1)
    entry = json.loads(raw)
    assert list(entry) == FAILURE_KEYS
    assert FAILED_AT_RE.match(entry["failed_at"])
    assert entry["exception"] == "worker_jobs.JobError"  # qualified, no message
    assert entry["error"] == "kaput"  # the message only
    assert entry["worker"] == worker_id and entry["queue"] == "q"
    assert b',"payload":' + pushed + b',"exception":' in raw  # byte for byte
    trace = entry["backtrace"]
    assert trace and all(isinstance(line, str) and BACKTRACE_LINE_RE.match(line)
                         for line in trace)
    # Innermost frame first, as Ruby orders it; the worker's own frames are left out.
    assert trace[0].endswith("in `_explode'") and trace[1].endswith("in `boom'")
    assert "worker_jobs.py" in trace[0]
    assert not any("pyresqueworker" in line for line in trace)
    # A failed job is processed too (spec §6).
    assert (stat(r, "processed"), stat(r, "failed")) == (2, 1)
    assert (stat(r, f"processed:{worker_id}"), stat(r, f"failed:{worker_id}")) == (2, 1)


BAD_PAYLOADS = [
    # (raw item, exception, text the error must contain)
    (b'{"class":"Nope","args":[]}', "NameError", "uninitialized constant Nope"),
    # A NUL reaches the process title (setproctitle refuses it) before the job runs.
    (b'{"class":"Rec\\u0000ord","args":[]}', "NameError", "uninitialized constant Rec\0ord"),
    (b"not json", "Resque::Helpers::DecodeException", ""),
    (b'{"class":"Record","args":["\xff\xfe"]}', "Resque::Helpers::DecodeException", ""),
    (b'["Record", 1]', "Resque::Helpers::DecodeException", "object"),
    (b'{"class":"Record","args":"str"}', "Resque::Helpers::DecodeException", "args"),
    (b'{"class":"BadDecoder","args":[]}', "Resque::Helpers::DecodeException", "decoder"),
    (b'{"class":"Tokened","args":[]}', "Resque::Helpers::DecodeException", "no token"),
    (b'{"class":"Exit","args":[3]}', "SystemExit", "3"),
]


def test_bad_payloads_become_failures_and_the_worker_keeps_working(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "q")
    [worker_id] = worker.wait_registered()
    r.rpush(NS + "queue:q", *[item for item, _, _ in BAD_PAYLOADS])
    r.rpush(NS + "queue:q", '{"class":"Record","args":["still alive"]}')
    assert wait_ran(r, 1)[0]["args"] == ["still alive"]
    found = wait_failures(r, len(BAD_PAYLOADS))
    assert worker.log().count("no Python handler is registered for class") == 2  # Nope, Rec\0ord
    assert "no Python handler is registered for class 'Rec\\x00ord'" in worker.log()  # escaped
    for (item, exception, error), entry in zip(BAD_PAYLOADS, found):
        assert list(entry) == FAILURE_KEYS, item
        assert (entry["exception"], entry["worker"], entry["queue"]) == (
            exception, worker_id, "q"), item
        assert error in entry["error"], (item, entry["error"])
        if exception == "NameError":  # Ruby's text exactly; the hint goes to the log
            assert entry["error"] == error
        assert isinstance(entry["backtrace"], list)
        if item.startswith(b"{") and b"\xff" not in item:
            assert entry["payload"] == json.loads(item)
        else:  # undecodable: kept as a string so resque-web can still show it
            assert isinstance(entry["payload"], str) and entry["payload"]
    assert found[[item for item, _, _ in BAD_PAYLOADS].index(b"not json")]["payload"] == "not json"
    assert worker.proc.poll() is None and worker.ids() == [worker_id]
    assert r.get(NS + f"worker:{worker_id}") is None
    wait_until(lambda: stat(r, "processed") == len(BAD_PAYLOADS) + 1, "all counted")


def test_worker_key_holds_the_running_job_byte_for_byte(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "high")
    [worker_id] = worker.wait_registered()
    # Spacing, float spelling and key order a re-encode would change; non-ASCII and '/'.
    pushed = '{ "class" : "Hold", "args": ["key", 30], "f": [1.0e+20, "é/ü"], "a": null }'
    r.rpush(NS + "queue:high", pushed.encode())
    wait_started(r)
    value = r.get(NS + f"worker:{worker_id}")
    assert value is not None
    match = re.fullmatch(rb'\{"queue":"high","run_at":"([^"]+)","payload":(.*)\}', value, re.S)
    assert match, value
    assert RUN_AT_RE.match(match.group(1).decode())
    assert match.group(2) == pushed.encode()
    assert json.loads(value)["payload"]["class"] == "Hold"
    r.set("test:release:key", 1)
    wait_ran(r, 1)
    wait_until(lambda: r.get(NS + f"worker:{worker_id}") is None, "worker key deleted")


def test_async_jobs_class_jobs_with_hooks_and_custom_decoders(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "q")
    worker.wait_registered()
    r.rpush(NS + "queue:q", '{"class":"AsyncRecord","args":[1,"a"]}',
            '{"class":"Hooked","args":["ok"]}', '{"class":"Hooked","args":["fail"]}',
            '{"class":"Tokened","token":"t0k"}')  # a custom decoder reads its own shape
    assert [(d["class"], d["args"]) for d in wait_ran(r, 3)] == [
        ("AsyncRecord", [1, "a"]), ("Hooked", ["ok"]), ("Tokened", ["t0k"])]
    [entry] = wait_failures(r, 1)
    assert (entry["exception"], entry["error"]) == ("worker_jobs.JobError", "hooked failure")
    assert [h.decode() for h in r.lrange("test:hooks", 0, -1)] == [
        "before_perform ('ok',)", "before_perform_b ('ok',)", "perform ('ok',)",
        "after_perform ('ok',)",
        "before_perform ('fail',)", "before_perform_b ('fail',)", "perform ('fail',)",
        "on_failure JobError ('fail',)",
    ]


def push_records(r: redis.Redis, queue: str, count: int) -> None:
    r.sadd(NS + "queues", queue)
    r.rpush(NS + f"queue:{queue}", *[f'{{"class":"Record","args":[{i}]}}' for i in range(count)])


def test_weighted_queues_take_from_every_queue(r: redis.Redis, spawn_worker: Spawn) -> None:
    push_records(r, "high", 40)
    push_records(r, "low", 40)
    spawn_worker("--queues", "high=2,low=1").wait_registered()
    order = [d["queue"] for d in wait_ran(r, 80)]
    # Not strict priority: low is served before high is empty. (All 40 high jobs first would
    # happen with probability (2/3)^40, about 1 in 10 million.)
    assert "low" in order[:40] and "high" in order[:40]
    assert sorted(order) == ["high"] * 40 + ["low"] * 40


def test_strict_queues_drain_the_first_queue_first(r: redis.Redis, spawn_worker: Spawn) -> None:
    push_records(r, "low", 10)
    push_records(r, "high", 10)
    spawn_worker("--queues", "high,low").wait_registered()
    assert [d["queue"] for d in wait_ran(r, 20)] == ["high"] * 10 + ["low"] * 10


def test_globs_and_exclusions_expand_against_the_queues_set(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    for queue in ("mail_b", "mail_a", "other", "skip"):
        push_records(r, queue, 1)
    star = spawn_worker("--queues", "*,!skip")
    [star_id] = star.wait_registered()
    assert star_id.endswith(":*")  # exclusions are not part of the id (spec §7.1)
    # '*' is every known queue, alphabetically, in strict order.
    assert [d["queue"] for d in wait_ran(r, 3)] == ["mail_a", "mail_b", "other"]
    assert r.llen(NS + "queue:skip") == 1
    star.stop()

    r.delete("test:ran")
    push_records(r, "mail_c", 1)
    push_records(r, "other", 1)
    mail = spawn_worker("--queues", "mail_*")
    [mail_id] = mail.wait_registered()
    assert mail_id.endswith(":mail_*")
    assert [d["queue"] for d in wait_ran(r, 1)] == ["mail_c"]
    assert r.llen(NS + "queue:other") == 1 and r.llen(NS + "queue:skip") == 1


def test_pause_all_workers_stops_claiming_until_deleted(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    r.set(NS + "pause-all-workers", " TRUE ")  # stripped and case-insensitive, as in Ruby
    push_records(r, "q", 1)
    worker = spawn_worker("--queues", "q")
    worker.wait_registered()
    # The title turns to Paused only after a claim found the pause flag with the job queued.
    worker.wait_title("Paused")
    assert r.llen(NS + "queue:q") == 1 and ran(r) == []
    r.delete(NS + "pause-all-workers")
    assert wait_ran(r, 1)[0]["args"] == [0]
    worker.wait_title("Waiting for q")


def test_usr2_pauses_and_cont_resumes(r: redis.Redis, spawn_worker: Spawn) -> None:
    worker = spawn_worker("--queues", "q")
    worker.wait_registered()
    worker.wait_title("Waiting for q")
    worker.send(signal.SIGUSR2)
    worker.wait_title("Paused")
    push_records(r, "q", 1)
    time.sleep(0.5)  # a negative can only be shown by giving it time: several idle loops
    assert r.llen(NS + "queue:q") == 1 and ran(r) == []
    worker.send(signal.SIGCONT)
    assert wait_ran(r, 1)[0]["args"] == [0]
    worker.wait_title("Waiting for q")


def test_a_paused_queue_keeps_its_jobs_without_making_the_worker_spin(
    r: redis.Redis, redis_url: str, spawn_worker: Spawn
) -> None:
    r.sadd(NS + "pyresque:paused-queues", "p")
    push_records(r, "p", 1)
    worker = spawn_worker("--queues", "p,q")
    worker.wait_registered()
    r.rpush(NS + "queue:q", '{"class":"Record","args":["q"]}')
    # Strict order p,q: the claim that took the q job looked at (and skipped) p first.
    assert wait_ran(r, 1)[0]["queue"] == "q"
    assert r.llen(NS + "queue:p") == 1
    # Idle with a non-empty paused queue: its doorbell rings at once, which must not spin.
    sent, total = count_commands(redis_url, 1.0)
    print(f"paused-queue idle: sent={sent} total={total}")
    assert sum(sent.values()) <= 40, sent
    assert total <= 200, total
    r.srem(NS + "pyresque:paused-queues", "p")
    assert wait_ran(r, 2)[1]["queue"] == "p"


@pytest.mark.parametrize("interval", ["1", "0.1"])
def test_an_idle_worker_costs_redis_almost_nothing(
    r: redis.Redis, redis_url: str, spawn_worker: Spawn, interval: str
) -> None:
    """8 idle slots on 3 queues: a blocking watcher per queue, every few seconds; the slots
    sleep without polling, whatever --interval. (Without the fleet's once-a-minute chart
    sample, about ten commands that otherwise fall into the window at a minute's turn.)"""
    worker = spawn_worker("--queues", "high=2,low=1,mail", "--concurrency", "8",
                          "--interval", interval, "--no-time-series")
    worker.wait_registered(8)
    worker.wait_title("Waiting for")
    time.sleep(1.5)  # every slot's first claim done; watchers start with the first sleeper
    sent, total = count_commands(redis_url, 3.0)
    print(f"idle, 8 slots x 3 queues, interval {interval}: sent={sent} total={total}")
    # 3 watchers x one 10 s BLMOVE; a heartbeat or a schedules check may fall in the window.
    assert sum(sent.values()) <= 6, sent
    assert total <= 12, total
    # And the waiting is not blind: a job on the lightest queue is picked up at once.
    r.rpush(NS + "queue:mail", '{"class":"Record","args":["mail"]}')
    assert wait_ran(r, 1)[0]["queue"] == "mail"


def test_a_burst_into_an_idle_worker_fans_out_to_its_sleeping_slots(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "a,b", "--concurrency", "4")
    worker.wait_registered(4)
    worker.wait_title("Waiting for")
    r.rpush(NS + "queue:b", *['{"class":"Hold","args":["burst"]}'] * 4)
    wait_until(lambda: r.llen("test:started") == 4, "every slot to take one job")
    r.set("test:release:burst", 1)
    wait_until(lambda: stat(r, "processed") == 4, "the burst to finish")


def test_blpop_fetch_runs_jobs_and_writes_the_worker_key(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "high,low", "--fetch", "blpop")
    [worker_id] = worker.wait_registered()
    pushed = b'{"class":"Hold","args":["blpop"]}'
    r.rpush(NS + "queue:low", pushed)
    wait_started(r)
    value = r.get(NS + f"worker:{worker_id}")
    assert value is not None and value.endswith(b',"payload":' + pushed + b"}")
    assert json.loads(value)["queue"] == "low"
    r.set("test:release:blpop", 1)
    r.rpush(NS + "queue:high", '{"class":"Record","args":["next"]}')
    assert [d["class"] for d in wait_ran(r, 2)] == ["Hold", "Record"]
    wait_until(lambda: stat(r, "processed") == 2, "both counted")
    assert r.get(NS + f"worker:{worker_id}") is None


def test_a_failure_message_that_is_not_utf8_is_written_and_the_worker_goes_on(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    """A message decoded with surrogateescape cannot go to Redis as it is: it is written as
    ``\\udcff`` text, and the next job runs (it used to wedge the slot's claim)."""
    r.rpush("resque:queue:jobs", '{"class":"BadMessage","args":[]}',
            '{"class":"Record","args":[1]}')
    spawn_worker("--app", "feature_jobs", "--queues", "jobs")
    [entry] = wait_failures(r, 1)
    assert entry["exception"] == "ValueError" and entry["error"] == "bad \\udcff byte"
    assert wait_ran(r, 1)[0]["class"] == "Record"
