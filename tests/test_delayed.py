"""Delayed jobs written byte for byte as resque-scheduler writes them (spec §15.1, §15.2)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import redis

from pyresqueworker.client._client import Client, NoClassError, NoQueueError
from pyresqueworker.client.delayed import DelayedQueue, epoch_seconds

NOW = 1_705_312_200  # 2024-01-15 09:50:00 UTC
LATER = NOW + 3600


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(r)


@pytest.fixture
def dq(client: Client) -> DelayedQueue:
    return DelayedQueue(client, clock=lambda: NOW + 0.75)


def item(class_name: str, args: list[object], queue: str) -> bytes:
    """resque-scheduler's item, built by hand from the spec: class, args, queue; compact."""
    return json.dumps(
        {"class": class_name, "args": args, "queue": queue},
        separators=(",", ":"), ensure_ascii=False,
    ).encode()


def test_enqueue_at_writes_resque_scheduler_structures(r: redis.Redis, dq: DelayedQueue) -> None:
    when = datetime.fromtimestamp(LATER + 0.9, timezone.utc)  # truncated to LATER
    assert dq.enqueue_at(when, "SendFollowUpEmail", {"user_id": 1}, "é", queue="email") == LATER
    expected = item("SendFollowUpEmail", [{"user_id": 1}, "é"], "email")
    assert expected == (
        '{"class":"SendFollowUpEmail","args":[{"user_id":1},"é"],"queue":"email"}'.encode()
    )
    assert sorted(r.keys()) == sorted([
        f"resque:delayed:{LATER}".encode(),
        b"resque:timestamps:" + expected,
        b"resque:delayed_queue_schedule",
    ])
    assert r.lrange(f"resque:delayed:{LATER}", 0, -1) == [expected]
    assert r.smembers(b"resque:timestamps:" + expected) == {f"delayed:{LATER}".encode()}
    assert r.zrange("resque:delayed_queue_schedule", 0, -1, withscores=True) == [
        (str(LATER).encode(), float(LATER))
    ]


def test_same_moment_twice_appends_in_order(r: redis.Redis, dq: DelayedQueue) -> None:
    dq.enqueue_at(LATER, "A", 1, queue="q")
    dq.enqueue_at(LATER, "A", 2, queue="q")
    dq.enqueue_at(LATER, "A", 1, queue="q")
    assert r.lrange(f"resque:delayed:{LATER}", 0, -1) == [
        item("A", [1], "q"), item("A", [2], "q"), item("A", [1], "q")
    ]
    assert r.zcard("resque:delayed_queue_schedule") == 1
    assert dq.delayed_count() == 3


@pytest.mark.parametrize("when", [NOW, NOW - 1, float(NOW) + 0.99, NOW - 86400])
def test_at_or_before_now_goes_straight_to_the_queue(
    r: redis.Redis, dq: DelayedQueue, when: float
) -> None:
    assert dq.enqueue_at(when, "Archive", 7, queue="low") is None
    assert r.lrange("resque:queue:low", 0, -1) == [b'{"class":"Archive","args":[7]}']
    assert r.smembers("resque:queues") == {b"low"}
    assert not r.exists("resque:delayed_queue_schedule")


def test_enqueue_in_uses_the_clock(r: redis.Redis, dq: DelayedQueue) -> None:
    assert dq.enqueue_in(60, "A", queue="q") == NOW + 60  # NOW + 0.75 + 60, floored
    assert dq.enqueue_in(timedelta(minutes=2), "A", queue="q") == NOW + 120
    assert dq.enqueue_in(0, "A", queue="q") is None
    assert r.llen("resque:queue:q") == 1
    assert dq.delayed_timestamps() == [NOW + 60, NOW + 120]


def test_queue_and_class_are_validated(r: redis.Redis) -> None:
    dq = DelayedQueue(Client(r, queue_for={"Known": "kq"}.get), clock=lambda: NOW)
    with pytest.raises(NoQueueError):
        dq.enqueue_at(LATER, "Unknown", 1)
    with pytest.raises(NoClassError):
        dq.enqueue_at(LATER, "", queue="q")
    with pytest.raises(ValueError, match="naive"):
        dq.enqueue_at(datetime(2030, 1, 1), "Known")
    assert r.keys() == []
    dq.enqueue_at(LATER, "Known", 1)
    assert dq.scheduled_at("Known", 1) == [LATER]
    assert r.lrange(f"resque:delayed:{LATER}", 0, -1) == [item("Known", [1], "kq")]


def test_epoch_seconds_floors_like_ruby_to_i() -> None:
    assert epoch_seconds(1.999) == 1
    assert epoch_seconds(datetime(2024, 1, 15, 10, 50, tzinfo=timezone(timedelta(hours=1)))) == NOW
    with pytest.raises(TypeError):
        epoch_seconds("1705312200")  # type: ignore[arg-type]


def test_remove_delayed_counts_like_ruby(r: redis.Redis, dq: DelayedQueue) -> None:
    for ts in (LATER, LATER + 10, LATER):
        dq.enqueue_at(ts, "A", {"id": 1}, queue="q")
    dq.enqueue_at(LATER, "A", {"id": 2}, queue="q")
    assert dq.scheduled_at("A", {"id": 1}, queue="q") == [LATER, LATER + 10]
    assert dq.is_delayed("A", {"id": 1}, queue="q")
    assert dq.delayed_count() == 4
    assert dq.remove_delayed("A", {"id": 1}, queue="q") == 3
    assert dq.remove_delayed("A", {"id": 1}, queue="q") == 0
    assert not dq.is_delayed("A", {"id": 1}, queue="q")
    assert not r.exists(b"resque:timestamps:" + item("A", [{"id": 1}], "q"))
    assert dq.delayed_count() == 1
    # As in Ruby, the emptied timestamp stays scheduled until a scheduler cleans it up.
    assert dq.delayed_timestamps() == [LATER, LATER + 10]
    assert dq.delayed_at(LATER) == [{"class": "A", "args": [{"id": 2}], "queue": "q"}]
    assert dq.delayed_at(LATER + 10) == []


def test_listing_pages(dq: DelayedQueue) -> None:
    for n in range(5):
        dq.enqueue_at(LATER + n, "A", n, queue="q")
        dq.enqueue_at(LATER, "B", n, queue="q")
    assert dq.delayed_timestamps(1, 2) == [LATER + 1, LATER + 2]
    assert dq.delayed_timestamps(0, 0) == []
    assert [i["args"] for i in dq.delayed_at(LATER, 2, 2)] == [[1], [2]]
    assert dq.delayed_size(LATER) == 6


def test_pipeline_queues_without_executing(r: redis.Redis, dq: DelayedQueue) -> None:
    pipe = r.pipeline(transaction=False)
    assert dq.enqueue_at(LATER, "A", 1, queue="q", pipeline=pipe) == LATER
    assert dq.enqueue_at(NOW, "B", queue="q", pipeline=pipe) is None
    assert r.keys() == []
    pipe.execute()
    assert dq.scheduled_at("A", 1, queue="q") == [LATER]
    assert r.lrange("resque:queue:q", 0, -1) == [b'{"class":"B","args":[]}']

    pipe = r.pipeline(transaction=False)
    assert dq.remove_delayed("A", 1, queue="q", pipeline=pipe) is None
    assert dq.delayed_count() == 1
    assert pipe.execute() == [1, 1]
    assert dq.delayed_count() == 0


def test_transaction_pipeline_is_atomic_with_the_callers_writes(
    r: redis.Redis, dq: DelayedQueue
) -> None:
    r.set("resque:order:1", "new")
    with r.pipeline(transaction=True) as pipe:
        pipe.watch("resque:order:1")
        r.set("resque:order:1", "changed elsewhere")
        pipe.multi()
        pipe.set("resque:order:1", "placed")
        dq.enqueue_at(LATER, "Remind", 1, queue="q", pipeline=pipe)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.keys() == [b"resque:order:1"]
    assert r.get("resque:order:1") == b"changed elsewhere"
    with r.pipeline(transaction=True) as pipe:
        pipe.set("resque:order:1", "placed")
        dq.enqueue_at(LATER, "Remind", 1, queue="q", pipeline=pipe)
        pipe.execute()
    assert r.get("resque:order:1") == b"placed"
    assert dq.scheduled_at("Remind", 1, queue="q") == [LATER]


def test_multi_that_fails_to_queue_leaves_nothing(r: redis.Redis, dq: DelayedQueue) -> None:
    pipe = r.pipeline(transaction=True)
    dq.enqueue_at(LATER, "Remind", 1, queue="q", pipeline=pipe)
    pipe.execute_command("NO-SUCH-COMMAND")  # rejected while queueing: EXECABORT
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert r.keys() == []


@pytest.mark.ruby
def test_ruby_sees_and_removes_python_delayed_jobs(
    ruby: str, redis_url: str, dq: DelayedQueue
) -> None:
    """resque-scheduler's delayed?/remove_delayed/count_all_scheduled_jobs, with only redis-rb."""
    dq.enqueue_at(LATER, "SendFollowUpEmail", {"user_id": 1}, "é", 1.5, None, queue="email")
    dq.enqueue_at(LATER + 5, "SendFollowUpEmail", {"user_id": 1}, "é", 1.5, None, queue="email")
    dq.enqueue_at(LATER, "Other", queue="email")
    script = r"""
require "redis"
require "json"
r = Redis.new(url: ARGV[0])
item = JSON.generate({"class" => "SendFollowUpEmail",
                      "args" => [{"user_id" => 1}, "é", 1.5, nil], "queue" => "email"})
set = "resque:timestamps:#{item}"
members = r.smembers(set).sort
delayed = !members.empty?
removed = members.sum { |key| n = r.lrem("resque:#{key}", 0, item); r.srem(set, key); n }
total = r.zrange("resque:delayed_queue_schedule", 0, -1).sum { |ts| r.llen("resque:delayed:#{ts}") }
puts JSON.generate([delayed, members.map { |k| k.tr("delayed:", "").to_i }, removed, total])
"""
    proc = subprocess.run(
        [ruby, "-e", script, redis_url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [True, [LATER, LATER + 5], 2, 1]
    assert not dq.is_delayed("SendFollowUpEmail", {"user_id": 1}, "é", 1.5, None, queue="email")
    assert dq.delayed_count() == 1
