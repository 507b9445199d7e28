"""Client reads (queues, workers, stats, info) and pauses against a real Redis."""

from __future__ import annotations

import dataclasses

import pytest
import redis
from conftest import load_worker_state

from pyresqueworker.client._client import Client, WorkerInfo
from pyresqueworker.protocol import wire

RUBY_ID = "vm:30579:high,low"
GO_ID = "vm:30580-1:high,high,low"
IDLE_ID = "vm:30581:low"


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(r)


def add_other_workers(r: redis.Redis) -> None:
    keys = wire.Keys()
    # a goworker slot, busy, with goworker's time formats
    r.sadd(keys.workers, GO_ID)
    r.set(keys.worker(GO_ID), '{"queue":"high","run_at":"2026-11-23T08:35:33.5+01:00",'
                              '"payload":{"class":"GoJob","args":[]}}')
    r.set(keys.worker_started(GO_ID), "2026-11-23 08:35:33.5 +0100 CET m=+0.001")
    r.set(keys.stat("processed", GO_ID), "5")
    r.set(keys.stat("failed", GO_ID), "junk")
    r.hset(keys.heartbeats, GO_ID, "2026-11-23T08:35:33+01:00")
    # an idle Ruby-style worker with no heartbeat (an old Resque)
    r.sadd(keys.workers, IDLE_ID)
    r.set(keys.worker_started(IDLE_ID), "2026-11-23 07:00:00 +0000")
    # ids Ruby's Worker.find cannot split: skipped, never a crash
    r.sadd(keys.workers, "garbage", "host:1", "host:1:", "host:1:,", b"\xff\xfe:1:q")
    # a worker key with a value that is not JSON
    r.sadd(keys.workers, "vm:1:broken")
    r.set(keys.worker("vm:1:broken"), "{not json")


def test_workers_reads_ruby_and_goworker_ids(client: Client, r: redis.Redis) -> None:
    load_worker_state(r)
    add_other_workers(r)
    workers = {worker.id: worker for worker in client.workers()}
    assert sorted(workers) == ["vm:1:broken", RUBY_ID, GO_ID, IDLE_ID]
    assert list(workers) == sorted(workers)

    assert workers[RUBY_ID] == WorkerInfo(
        id=RUBY_ID,
        host="vm",
        pid=30579,
        queues=("high", "low"),
        started="2026-11-23 07:35:33 +0000",
        heartbeat="2026-11-23T07:35:33+00:00",
        job={"queue": "low", "run_at": "2026-11-23T07:35:33Z",
             "payload": {"class": "RubySlow", "args": [2]}},
        processed=2,
        failed=2,
        state="working",
    )
    go = workers[GO_ID]
    assert (go.host, go.pid, go.queues) == ("vm", 30580, ("high", "high", "low"))
    assert (go.processed, go.failed, go.state) == (5, 0, "working")
    assert go.job is not None and go.job["payload"]["class"] == "GoJob"
    assert go.heartbeat == "2026-11-23T08:35:33+01:00"

    idle = workers[IDLE_ID]
    assert (idle.state, idle.job, idle.heartbeat, idle.processed) == ("idle", None, None, 0)
    assert idle.started == "2026-11-23 07:00:00 +0000"

    broken = workers["vm:1:broken"]
    assert (broken.state, broken.job) == ("working", None)

    with pytest.raises(dataclasses.FrozenInstanceError):
        go.state = "idle"  # type: ignore[misc]


def test_working_lists_only_busy_workers(client: Client, r: redis.Redis) -> None:
    load_worker_state(r)
    add_other_workers(r)
    assert [w.id for w in client.working()] == ["vm:1:broken", RUBY_ID, GO_ID]
    r.delete(wire.Keys().worker(RUBY_ID))
    assert [w.id for w in client.working()] == ["vm:1:broken", GO_ID]


def test_workers_many_ids_in_few_round_trips(client: Client, r: redis.Redis) -> None:
    keys = wire.Keys()
    ids = [f"h:{n}:q" for n in range(600)]  # more than one MGET batch
    r.sadd(keys.workers, *ids)
    for n in range(0, 600, 7):
        r.set(keys.worker(ids[n]), '{"queue":"q","run_at":"x","payload":{"class":"C","args":[]}}')
        r.set(keys.stat("processed", ids[n]), n)
    workers = {w.id: w for w in client.workers()}
    assert len(workers) == 600
    assert workers["h:7:q"].processed == 7 and workers["h:7:q"].state == "working"
    assert workers["h:8:q"].processed == 0 and workers["h:8:q"].state == "idle"
    assert len(client.working()) == len(range(0, 600, 7))


def test_no_workers(client: Client) -> None:
    assert client.workers() == []
    assert client.working() == []
    assert client.heartbeats() == {}


def test_heartbeats(client: Client, r: redis.Redis) -> None:
    load_worker_state(r)
    r.hset("resque:workers:heartbeat", "dead:1:q", "2020-01-01T00:00:00+00:00")
    assert client.heartbeats() == {
        RUBY_ID: "2026-11-23T07:35:33+00:00",
        "dead:1:q": "2020-01-01T00:00:00+00:00",
    }


def test_info_has_resque_info_fields(
    client: Client, r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAILS_ENV", raising=False)
    monkeypatch.delenv("RACK_ENV", raising=False)
    load_worker_state(r)  # queues high+low (empty), stat:processed 2, 2 failures, 1 worker
    add_other_workers(r)
    client.enqueue_to("high", "A", 1)
    client.enqueue_to("high", "A", 2)
    client.enqueue_to("mail", "B")
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    assert client.info() == {
        "pending": 3,
        "processed": 2,
        "queues": 3,
        "workers": 4,
        "working": 3,
        "failed": 2,
        "servers": [f"redis://127.0.0.1:{port}/0"],
        "environment": "development",
    }
    monkeypatch.setenv("RACK_ENV", "staging")
    assert client.info()["environment"] == "staging"
    monkeypatch.setenv("RAILS_ENV", "production")
    assert client.info()["environment"] == "production"


def test_info_on_empty_redis(client: Client) -> None:
    info = client.info()
    assert {k: info[k] for k in ("pending", "processed", "queues", "workers", "working",
                                 "failed")} == dict.fromkeys(
        ("pending", "processed", "queues", "workers", "working", "failed"), 0)


def test_size_peek_and_queues(client: Client, r: redis.Redis) -> None:
    for n in range(5):
        client.enqueue_to("low", "Job", n)
    client.enqueue_to("high", "Job")
    r.sadd("resque:queues", "empty")
    assert client.queues() == ["empty", "high", "low"]
    assert client.size("low") == 5
    assert client.size("missing") == 0
    assert client.peek("low") == [{"class": "Job", "args": [0]}]
    assert client.peek("low", 1, 2) == [{"class": "Job", "args": [1]},
                                        {"class": "Job", "args": [2]}]
    assert client.peek("low", 4, 10) == [{"class": "Job", "args": [4]}]
    assert client.peek("low", 0, 0) == []  # not LRANGE 0 -1
    assert client.peek("missing") == []


def test_peek_of_a_poison_item(client: Client, r: redis.Redis) -> None:
    r.rpush("resque:queue:q", '{"class":"A","args":[]}', "not json", "[1]")
    with pytest.raises(wire.DecodeError, match="not valid JSON"):
        client.peek("q", 0, 3)
    with pytest.raises(wire.DecodeError, match="item 2"):
        client.peek("q", 2)
    assert client.peek_raw("q", 1, 2) == [b"not json", b"[1]"]


def test_remove_queue(client: Client, r: redis.Redis) -> None:
    client.enqueue_to("a", "Job")
    client.enqueue_to("b", "Job")
    client.remove_queue("a")
    assert client.queues() == ["b"]
    assert r.exists("resque:queue:a") == 0
    assert client.size("b") == 1


def test_queue_pause(client: Client, r: redis.Redis) -> None:
    client.pause_queue("low")
    client.pause_queue("high")
    assert client.paused_queues() == ["high", "low"]
    assert r.smembers(wire.Keys().paused_queues) == {b"high", b"low"}
    client.unpause_queue("low")
    assert client.paused_queues() == ["high"]


def test_pause_all_is_resques_global_pause(client: Client, r: redis.Redis) -> None:
    assert not client.all_paused()
    client.pause_all()
    assert r.get("resque:pause-all-workers") == b"true"
    assert client.all_paused()
    client.unpause_all()
    assert r.exists("resque:pause-all-workers") == 0
    r.set("resque:pause-all-workers", " TRUE\n")  # what Ruby's strip.downcase accepts
    assert client.all_paused()
    r.set("resque:pause-all-workers", "yes")
    assert not client.all_paused()


def test_credentials_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(url="redis://user:secret@127.0.0.1:1/0")
    assert "secret" not in repr(client)
    assert "127.0.0.1:1/0" in repr(client)
    with pytest.raises(redis.ConnectionError) as caught:
        client.size("q")
    assert "secret" not in str(caught.value)
    assert "secret" not in repr(caught.value)
    client.close()


def test_client_from_environment_url(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("RESQUE_REDIS_URL", redis_url)
    client = Client()
    client.enqueue_to("q", "Job")
    assert client.size("q") == 1
    assert redis_url.rsplit("/", 1)[0].split("//")[1] in repr(client)
    client.close()
