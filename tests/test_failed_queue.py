"""The failed list, edited as Resque::Failure::Redis and resque-web do, on a real Redis."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any, Callable

import pytest
import redis
from conftest import GOLDEN

from pyresqueworker.client._client import Client
from pyresqueworker.client.failed_queue import FailedEntryError, FailedQueueBusyError
from pyresqueworker.protocol import wire

FAILED = "resque:failed"
RETRIED_AT = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \S+$")


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(r)


def golden_failures() -> list[str]:
    with open(GOLDEN / "worker-state.json", encoding="utf-8") as handle:
        return list(json.load(handle)[FAILED]["value"])


def entry(queue: str, klass: str, args: Any, **extra: Any) -> str:
    payload = {"class": klass, "args": args}
    fields = {"failed_at": "2024/01/15 09:50:00 UTC", "payload": payload,
              "exception": "RuntimeError", "error": "boom", "backtrace": [],
              "worker": "web1:1:" + queue, "queue": queue}
    fields.update(extra)
    return wire.dumps(fields)


def test_count_and_read_ruby_failures(client: Client, r: redis.Redis) -> None:
    golden = golden_failures()
    r.rpush(FAILED, *golden, "not json", '["array"]')
    assert client.failed_count() == 4
    assert client.failed(0, 2) == [json.loads(raw) for raw in golden]
    assert client.failed(1) == [json.loads(golden[1])]
    assert client.failed(2, 5) == [None, None]  # resque-web: "could not be parsed"
    assert client.failed(0, 0) == []
    assert client.failed(10, 5) == []


def test_requeue_marks_entry_and_enqueues_class_and_args(client: Client, r: redis.Redis) -> None:
    golden = golden_failures()
    r.rpush(FAILED, *golden)
    retried_at = client.requeue(1)
    assert RETRIED_AT.match(retried_at)
    # Ruby's bytes kept exactly, retried_at appended as the last key
    assert r.lindex(FAILED, 1) == (golden[1][:-1] + f',"retried_at":"{retried_at}"}}').encode()
    assert r.lindex(FAILED, 0) == golden[0].encode()
    assert client.failed_count() == 2  # the entry stays
    assert r.lrange("resque:queue:high", 0, -1) == [b'{"class":"NoSuchClass","args":[1]}']
    assert r.smembers("resque:queues") == {b"high"}


def test_requeue_only_the_entry_the_caller_expects(client: Client, r: redis.Redis) -> None:
    golden = golden_failures()
    r.rpush(FAILED, *golden)
    with pytest.raises(FailedEntryError, match="not the one expected"):
        client.requeue(1, if_entry=lambda raw: raw == golden[0].encode())
    assert r.lrange(FAILED, 0, -1) == [g.encode() for g in golden]  # nothing written
    assert not r.exists("resque:queue:high")
    client.requeue(1, if_entry=lambda raw: raw == golden[1].encode())
    assert r.llen("resque:queue:high") == 1


def test_requeue_again_keeps_retried_at_last(client: Client, r: redis.Redis) -> None:
    r.rpush(FAILED, entry("q", "Job", [1], retried_at="2020/01/01 00:00:00 UTC"))
    retried_at = client.requeue(0)
    pairs = json.loads(r.lindex(FAILED, 0) or b"", object_pairs_hook=lambda kv: kv)
    assert pairs[-1] == ["retried_at", retried_at] or pairs[-1] == ("retried_at", retried_at)
    assert [key for key, _ in pairs].count("retried_at") == 1
    assert client.size("q") == 1


def test_requeue_drops_extra_payload_keys_and_splats_args(client: Client, r: redis.Redis) -> None:
    r.rpush(
        FAILED,
        wire.dumps({"failed_at": "x", "payload": {"class": "P", "args": [1e20, {"a": 1}],
                                                   "enqueue_timestamp": 1.5},
                    "queue": "q", "worker": "w:1:q"}),
        entry("q", "NilArgs", None),
        entry("q", "HashArgs", {"a": 1}),
        entry("q", "ScalarArgs", "str"),
    )
    for index in range(4):
        client.requeue(index)
    assert r.lrange("resque:queue:q", 0, -1) == [
        b'{"class":"P","args":[1.0e+20,{"a":1}]}',
        b'{"class":"NilArgs","args":[]}',
        b'{"class":"HashArgs","args":[["a",1]]}',
        b'{"class":"ScalarArgs","args":["str"]}',
    ]
    assert b'"enqueue_timestamp":1.5' in (r.lindex(FAILED, 0) or b"")  # kept in the entry


@pytest.mark.parametrize(
    "bad",
    ["not json", "", '["array"]', entry("", "Job", []), entry("q", "", []),
     wire.dumps({"failed_at": "x", "payload": None, "queue": "q"}),
     wire.dumps({"failed_at": "x", "payload": {"class": "A"}})],
)
def test_requeue_refuses_entries_ruby_cannot_requeue(
    client: Client, r: redis.Redis, bad: str
) -> None:
    r.rpush(FAILED, bad)
    with pytest.raises(FailedEntryError):
        client.requeue(0)
    assert r.lrange(FAILED, 0, -1) == [bad.encode()]  # untouched
    assert r.exists("resque:queues") == 0


def test_requeue_out_of_range(client: Client, r: redis.Redis) -> None:
    with pytest.raises(IndexError):
        client.requeue(0)
    r.rpush(FAILED, entry("q", "Job", []))
    with pytest.raises(IndexError):
        client.requeue(1)


def on_command(monkeypatch: pytest.MonkeyPatch, r: redis.Redis, name: str,
               replace: Callable[..., Any]) -> None:
    """Route the client's ``name`` commands through ``replace(real, *args)``."""
    real = r.execute_command

    def patched(*args: Any, **options: Any) -> Any:
        if args[0] == name:
            return replace(real, *args, **options)
        return real(*args, **options)

    monkeypatch.setattr(r, "execute_command", patched)


def test_requeue_never_overwrites_an_entry_that_changed(
    client: Client, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = entry("q", "First", []), entry("q", "Second", [])
    r.rpush(FAILED, first, second)
    reads = []

    def stale_once(real: Callable[..., Any], *args: Any) -> Any:
        reads.append(args)
        result = real(*args)
        if len(reads) == 1:
            # Simulate a concurrent remove between our read and our write: index 0 now holds
            # "Second" but we read "First".
            real("LPOP", FAILED)
        return result

    on_command(monkeypatch, r, "LINDEX", stale_once)
    client.requeue(0)
    assert len(reads) == 2  # the write was refused once, then redone on fresh bytes
    monkeypatch.undo()
    assert r.lrange("resque:queue:q", 0, -1) == [b'{"class":"Second","args":[]}']
    assert json.loads(r.lrange(FAILED, 0, -1)[0])["payload"]["class"] == "Second"


def test_requeue_gives_up_when_the_entry_keeps_changing(
    client: Client, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    r.rpush(FAILED, entry("q", "Job", []))
    on_command(monkeypatch, r, "LINDEX", lambda real, *args: entry("q", "Stale", []).encode())
    with pytest.raises(FailedQueueBusyError):
        client.requeue(0)
    monkeypatch.undo()
    assert r.exists("resque:queue:q") == 0
    assert r.lrange(FAILED, 0, -1) == [entry("q", "Job", []).encode()]


def test_remove(client: Client, r: redis.Redis) -> None:
    entries = [entry("q", f"J{n}", [n]) for n in range(3)]
    r.rpush(FAILED, *entries)
    client.remove(1)
    assert r.lrange(FAILED, 0, -1) == [entries[0].encode(), entries[2].encode()]
    with pytest.raises(IndexError):
        client.remove(5)
    assert r.lrange(FAILED, 0, -1) == [entries[0].encode(), entries[2].encode()]
    client.remove(-1)  # Ruby's LSET accepts negative indexes too
    assert r.lrange(FAILED, 0, -1) == [entries[0].encode()]


def test_requeue_all_and_requeue_queue(client: Client, r: redis.Redis) -> None:
    r.rpush(FAILED, entry("high", "A", [1]), "poison", entry("low", "B", [2]),
            entry("high", "C", [3], retried_at="2020/01/01 00:00:00 UTC"))
    assert client.requeue_queue("high") == 2
    assert client.size("high") == 2 and client.size("low") == 0
    assert client.requeue_all() == 3  # already retried ones too, as Ruby does
    assert client.size("high") == 4 and client.size("low") == 1
    entries = client.failed(0, 4)
    assert entries[1] is None
    assert all(e is not None and RETRIED_AT.match(e["retried_at"]) for e in entries[::2])
    assert r.lindex(FAILED, 1) == b"poison"


def test_requeue_all_over_several_chunks(client: Client, r: redis.Redis) -> None:
    r.rpush(FAILED, *[entry("q", "Job", [n]) for n in range(1203)])
    assert client.requeue_all() == 1203
    jobs = r.lrange("resque:queue:q", 0, -1)
    assert [json.loads(job)["args"] for job in jobs] == [[n] for n in range(1203)]
    assert all("retried_at" in (e or {}) for e in client.failed(0, 1203))


def test_requeue_all_does_not_chase_new_failures(client: Client, r: redis.Redis) -> None:
    # entries appended while walking belong to a later call
    r.rpush(FAILED, entry("q", "Job", [1]))
    real_pipeline = r.pipeline

    def pipeline_then_fail_again(*args: Any, **kwargs: Any) -> Any:
        r.rpush(FAILED, entry("q", "Job", [1]))
        return real_pipeline(*args, **kwargs)

    r.pipeline = pipeline_then_fail_again  # type: ignore[method-assign]
    try:
        assert client.requeue_all() == 1
    finally:
        r.pipeline = real_pipeline  # type: ignore[method-assign]
    assert client.size("q") == 1


def test_clear_retried(client: Client, r: redis.Redis) -> None:
    entries = []
    for n in range(1100):  # spans three chunks of the walk
        if n % 3 == 0:
            entries.append(entry("q", "Job", [n], retried_at="2024/01/15 09:51:00 UTC"))
        elif n % 3 == 1:
            entries.append(entry("q", "Job", [n], retried_at=None))  # null is not retried
        else:
            entries.append(entry("q", "Job", [n]))
    entries[5] = "poison"
    r.rpush(FAILED, *entries)
    kept = [e for n, e in enumerate(entries) if n % 3 != 0]
    assert client.clear_retried() == len(entries) - len(kept)
    assert r.lrange(FAILED, 0, -1) == [e.encode() for e in kept]
    assert client.clear_retried() == 0


def test_requeue_then_clear_retried(client: Client, r: redis.Redis) -> None:
    golden = golden_failures()
    r.rpush(FAILED, *golden)
    client.requeue(0)
    assert client.clear_retried() == 1
    assert r.lrange(FAILED, 0, -1) == [golden[1].encode()]


def test_clear_failed(client: Client, r: redis.Redis) -> None:
    assert client.clear_failed() == 0
    r.rpush(FAILED, *golden_failures())
    assert client.clear_failed() == 2
    assert r.exists(FAILED) == 0


@pytest.mark.ruby
def test_ruby_json_reads_our_requeued_entry_unchanged(
    client: Client, r: redis.Redis, ruby: str, redis_url: str
) -> None:
    # Ruby's json gem re-encodes what we wrote to the same bytes: the entry is canonical Ruby.
    golden = golden_failures()
    r.rpush(FAILED, *golden, entry("q", "F", [1.0e20, -0.0, "é/\u2028"]))
    for index in range(3):
        client.requeue(index)
    script = (
        "require 'redis'; require 'json'; r = Redis.new(url: ARGV[0]); "
        "r.lrange('resque:failed', 0, -1).each { |s| "
        "  out = JSON.generate(JSON.parse(s)); puts(out == s ? 'same' : 'diff ' + out) }"
    )
    result = subprocess.run([ruby, "-e", script, redis_url], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split("\n")[:-1] == ["same"] * 3


def test_clear_retried_never_removes_an_entry_that_moved(
    client: Client, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    retried = entry("q", "A", [], retried_at="2024/01/15 09:51:00 UTC")
    keep = entry("q", "B", [])
    r.rpush(FAILED, retried, keep)

    def lrange_then_concurrent_remove(real: Callable[..., Any], *args: Any) -> Any:
        result = real(*args)
        real("LPOP", FAILED)  # another client removes entry 0: "B" moves to index 0
        return result

    on_command(monkeypatch, r, "LRANGE", lrange_then_concurrent_remove)
    assert client.clear_retried() == 0  # index 0 no longer holds what was read
    monkeypatch.undo()
    assert r.lrange(FAILED, 0, -1) == [keep.encode()]
