"""A run of large items: after one, the claim reads the queue's next head in its own round
trip, so each further large job costs Redis two round trips instead of three.

A slot's connection is its own (how slots connect), so every take here is the watched one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from claim_helpers import RUN_AT, WID

from pyresqueworker.protocol import _resp
from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._claim import NO_FINISH, PAUSED, SUCCESS, Claimed, Claimer

SMALL = b'{"class":"Small","args":[]}'


def big(n: int, size: int = 60_000) -> bytes:
    return json.dumps({"class": "Big", "args": [n, "x" * size]}).encode()




@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the exchanges on slots' fast path (each one write, then its replies)."""
    sent = [0]
    real = _resp._send_frames

    def counting(sock: Any, frames: list[bytes], link: Any) -> None:
        sent[0] += 1
        real(sock, frames, link)

    monkeypatch.setattr(_resp, "_send_frames", counting)
    return sent


def calls(r: redis.Redis, name: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def drain(claimer: Claimer, queues: list[str]) -> list[bytes]:
    got: list[bytes] = []
    finish = NO_FINISH
    while (claimed := claimer.claim(queues, finish, RUN_AT)) is not None:
        assert isinstance(claimed, Claimed) and claimed.valid
        got.append(claimed.raw)
        finish = SUCCESS
    return got


def test_a_run_of_large_items_takes_two_round_trips_each_after_the_first(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, round_trips: list[int]
) -> None:
    claimer, keys = slot_claimer
    items = [big(n) for n in range(5)]
    r.rpush(keys.queue("high"), *items)
    r.config_resetstat()
    assert drain(claimer, ["high"]) == items
    # The script's load (on the claim's own link, once), 3 for the first, 2 for each other,
    # then the finish that finds the queue empty, the UNWATCH of its unused read, and the
    # claim script's look at the queues.
    assert round_trips[0] == 1 + 3 + 2 * 4 + 3
    assert calls(r, "lindex") == 6 and calls(r, "lmove") == 0
    # Between the first and the last claim, no script: each finish is a MULTI of its own.
    assert calls(r, "evalsha") == 2 and calls(r, "exec") == 5 + 5
    assert int(r.get(keys.stat("processed")) or 0) == 5
    assert not r.exists(keys.worker(WID), keys.raw_payload(WID), keys.queue("high"))


def test_a_small_item_after_a_large_one_ends_the_watch(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis
) -> None:
    """Were the read-ahead's WATCH left on the connection, the push below would abort the
    next large take's transaction and send it down the slower LMOVE path."""
    claimer, keys = slot_claimer
    first, last = big(1), big(2)
    r.rpush(keys.queue("high"), first, SMALL)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", first, True)
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", SMALL, True)
    r.rpush(keys.queue("high"), last)
    r.config_resetstat()
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", last, True)
    assert calls(r, "lmove") == 0 and calls(r, "exec") == 1


def test_reading_ahead_only_reads_the_first_queue_of_the_fetch(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, round_trips: list[int]
) -> None:
    """When another queue comes first, the large queue's head is not read in vain."""
    claimer, keys = slot_claimer
    r.rpush(keys.queue("low"), big(1), big(2))
    assert claimer.claim(["low"], NO_FINISH, RUN_AT) == Claimed("low", big(1), True)
    r.rpush(keys.queue("high"), SMALL)
    r.config_resetstat()
    before = round_trips[0]
    assert claimer.claim(["high", "low"], SUCCESS, RUN_AT) == Claimed("high", SMALL, True)
    assert round_trips[0] == before + 1 and calls(r, "lindex") == 0
    assert claimer.claim(["low", "high"], SUCCESS, RUN_AT) == Claimed("low", big(2), True)


def test_a_lost_reply_to_a_reading_claim_finishes_the_previous_job_once(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = slot_claimer
    first, second = big(1), big(2)
    r.rpush(keys.queue("high"), first, second, SMALL)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", first, True)
    fast = claimer.caller
    real_many = fast.many

    def ran_then_cut(commands: Any) -> list[Any]:
        real_many(commands)
        assert fast.connection is not None
        fast.connection.disconnect()  # type: ignore[no-untyped-call]
        raise redis.ConnectionError("connection cut")

    monkeypatch.setattr(fast, "many", ran_then_cut)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], SUCCESS, RUN_AT)
    monkeypatch.undo()
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", second, True)
    assert int(r.get(keys.stat("processed")) or 0) == 1  # the first job counted once
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", SMALL, True)
    assert int(r.get(keys.stat("processed")) or 0) == 2


def test_scripts_lost_between_two_large_items_are_loaded_again(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis
) -> None:
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), big(1), big(2))
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big(1), True)
    r.script_flush()  # as after a Redis restart
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", big(2), True)
    assert int(r.get(keys.stat("processed")) or 0) == 1
    assert claimer.claim(["high"], SUCCESS, RUN_AT) is None
    assert int(r.get(keys.stat("processed")) or 0) == 2


def test_a_joined_argument_arrives_as_one_value_byte_for_byte(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis
) -> None:
    """Parts larger than a socket buffer, sent without joining them (several partial sends)."""
    fast = slot_claimer[0].caller
    parts = (b"{", b"\xff\x00" * 2_000_000, b"", b"}")
    replies = fast.many([("SET", "joined", _resp.Joined(parts)),
                         ("RPUSH", "joined:list", _resp.Joined((b"a", b"b")), "c")])
    assert replies == [b"OK", 2]
    assert r.get("joined") == b"".join(parts)
    assert r.lrange("joined:list", 0, -1) == [b"ab", b"c"]


def test_a_large_item_read_ahead_that_is_not_utf8_json_goes_to_the_raw_list(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, round_trips: list[int]
) -> None:
    claimer, keys = slot_claimer
    bad = b'{"class":"Big","args":["' + b"\xff" * 50_000 + b'"]}'
    r.rpush(keys.queue("high"), big(1), bad)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big(1), True)
    before = round_trips[0]
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", bad, False)
    assert round_trips[0] == before + 2  # it was read with the claim
    assert r.lrange(keys.raw_payload(WID), 0, -1) == [bad]
    held = json.loads(r.get(keys.worker(WID)) or b"")
    assert held["payload"] == f"invalid payload ({len(bad)} bytes)"
    assert not r.exists(keys.queue("high"))


def test_a_pause_between_two_large_items_stops_the_run_without_a_script_finish_twice(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis
) -> None:
    """Between large items the finish goes without the claim script; pauses still stop it."""
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), big(1), big(2))
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big(1), True)
    r.set(keys.pause_all, "true")
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == PAUSED
    assert int(r.get(keys.stat("processed")) or 0) == 1
    assert not r.exists(keys.worker(WID))  # no "being taken" left behind while paused
    assert r.lrange(keys.queue("high"), 0, -1) == [big(2)]
    r.delete(keys.pause_all)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big(2), True)


def test_caps_appearing_in_a_run_of_large_items_send_the_claim_back_to_the_script(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis
) -> None:
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), big(1), big(2), big(3))
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big(1), True)
    r.hset(keys.concurrency_caps, "Big", 1)
    r.config_resetstat()
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", big(2), True)
    assert calls(r, "evalsha") == 1  # the cap was checked by the script
    assert int(r.get(keys.stat("processed")) or 0) == 1
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", big(3), True)
    assert int(r.get(keys.stat("processed")) or 0) == 2


def test_a_finish_redis_refuses_runs_nothing_and_is_sent_again(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis
) -> None:
    """Out of memory, Redis refuses the finish's writes: its MULTI runs none of them."""
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), big(1), big(2))
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big(1), True)
    r.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.RedisError):
            claimer.claim(["high"], SUCCESS, RUN_AT)
        assert r.get(keys.stat("processed")) is None
        assert json.loads(r.get(keys.worker(WID)) or b"")["payload"]["args"][0] == 1
    finally:
        r.config_set("maxmemory", 0)
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", big(2), True)
    assert int(r.get(keys.stat("processed")) or 0) == 1


def test_a_cut_while_undoing_the_placeholder_does_not_finish_the_job_twice(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), big(1), big(2))
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big(1), True)
    r.set(keys.pause_all, "true")  # so the finish is followed by the undo
    fast = claimer.caller
    real_many = fast.many

    def cut_the_undo(commands: Any, **kw: Any) -> list[Any]:
        if commands[0] == ("UNWATCH",):
            raise redis.ConnectionError("connection cut")
        return real_many(commands, **kw)

    monkeypatch.setattr(fast, "many", cut_the_undo)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], SUCCESS, RUN_AT)
    monkeypatch.undo()
    r.delete(keys.pause_all)
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", big(2), True)
    assert int(r.get(keys.stat("processed")) or 0) == 1
