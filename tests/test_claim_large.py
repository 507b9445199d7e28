"""Large payloads: the claim script only flags them, the worker takes and checks them.

Every test runs twice: on a connection of its own (how slots connect), where the worker reads
the head under ``WATCH`` and takes it in the ``MULTI`` that writes the worker key, and on a
pooled connection, where it moves the item with ``LMOVE`` into the slot's raw list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis
from claim_helpers import RUN_AT, WID, cut_reply

from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker import _claim as fetch
from pyresqueworker.worker import _claim_large as large
from pyresqueworker.worker._claim import NO_FINISH, SUCCESS, Claimed, Claimer


@pytest.fixture(params=["watched", "moved"])
def taker(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[Claimer, Keys]]:
    conn = redis.Redis.from_url(redis_url, single_connection_client=request.param == "watched")
    keys = Keys("resque:")
    yield Claimer(conn, keys, WID), keys
    conn.close()




def calls(r: redis.Redis, name: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def big_payload(size: int = 100_000) -> bytes:
    return json.dumps({"class": "Big", "args": ["é" * (size // 2)]},
                      ensure_ascii=False, separators=(",", ":")).encode()


def test_a_large_payload_is_checked_by_the_worker_and_shown_byte_for_byte(
    taker: tuple[Claimer, Keys], r: redis.Redis,
) -> None:
    claimer, keys = taker
    item = big_payload()
    r.rpush(keys.queue("high"), item, b'{"class":"Next","args":[]}')
    claimed = claimer.claim(["high"], SUCCESS, RUN_AT)
    assert claimed == Claimed("high", item, True)
    held = r.get(keys.worker(WID))
    assert held is not None and held.endswith(b',"payload":' + item + b"}")
    assert json.loads(held)["payload"]["class"] == "Big"
    assert r.lrange(keys.queue("high"), 0, -1) == [b'{"class":"Next","args":[]}']


def test_a_large_payload_that_is_not_utf8_json_goes_to_the_raw_key(
    taker: tuple[Claimer, Keys], r: redis.Redis) -> None:
    claimer, keys = taker
    item = b'{"class":"Big","args":["' + b"\xff" * 50_000 + b'"]}'
    r.rpush(keys.queue("high"), item)
    claimed = claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert claimed == Claimed("high", item, False)
    assert r.lindex(keys.raw_payload(WID), 0) == item
    assert json.loads(r.get(keys.worker(WID)) or b"")["payload"].startswith("invalid payload")


def test_a_large_payload_never_enters_the_claim_script(
    taker: tuple[Claimer, Keys], r: redis.Redis) -> None:
    """The script only says the head is large; the worker takes it."""
    claimer, keys = taker
    item = big_payload(200_000)
    r.rpush(keys.queue("high"), item)
    call = claimer.prepare(["high"], NO_FINISH, RUN_AT)
    reply = fetch.CLAIM(r, call.keys, call.args)
    assert claimer.settle(call, reply) == fetch.HeldLarge("high")
    assert r.lrange(keys.queue("high"), 0, -1) == [item]
    assert (r.get(keys.worker(WID)) or b"").endswith(fetch.BEING_TAKEN)
    assert claimer.take_held("high", RUN_AT) == Claimed("high", item, True)
    assert not r.exists(keys.raw_payload(WID), keys.queue("high"))


def test_a_large_head_taken_by_another_worker_first_is_not_claimed_twice(
    taker: tuple[Claimer, Keys], r: redis.Redis,
) -> None:
    claimer, keys = taker
    item = big_payload()
    r.rpush(keys.queue("high"), item)
    call = claimer.prepare(["high"], NO_FINISH, RUN_AT)
    assert claimer.settle(call, fetch.CLAIM(r, call.keys, call.args)) == fetch.HeldLarge("high")
    r.lpop(keys.queue("high"))  # another worker took it meanwhile
    assert claimer.take_held("high", RUN_AT) is None
    assert not r.exists(keys.worker(WID))


def test_a_take_cut_by_a_lost_connection_resumes_without_finishing_twice(
    taker: tuple[Claimer, Keys], r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = taker
    item = big_payload()
    r.rpush(keys.queue("high"), b'{"class":"First","args":[]}', item)
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    real_check = large.checked_payload

    def cut(payload: bytes) -> None:  # LMOVE done, then the connection goes
        raise redis.ConnectionError("connection cut")

    monkeypatch.setattr(large, "checked_payload", cut)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], SUCCESS, RUN_AT)
    monkeypatch.setattr(large, "checked_payload", real_check)
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", item, True)
    assert int(r.get(keys.stat("processed")) or 0) == 1  # the first job counted once
    assert not r.exists(keys.raw_payload(WID), keys.queue("high"))


def test_a_reply_lost_while_a_large_payload_was_held_still_gives_that_job(
    taker: tuple[Claimer, Keys], r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = taker
    item = big_payload()
    r.rpush(keys.queue("high"), item, b'{"class":"Next","args":[]}')
    cut_reply(monkeypatch, after_running=True)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], NO_FINISH, RUN_AT)
    monkeypatch.undo()
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", item, True)
    assert r.lrange(keys.queue("high"), 0, -1) == [b'{"class":"Next","args":[]}']


def test_a_mixed_queue_takes_small_and_large_items_in_order(
    taker: tuple[Claimer, Keys], r: redis.Redis) -> None:
    claimer, keys = taker
    items = [b'{"class":"S","args":[1]}', big_payload(), b'{"class":"S","args":[2]}',
             b'\xff' * 9000, big_payload(50_000)]
    r.rpush(keys.queue("high"), *items)
    got = []
    finish = NO_FINISH
    while (claimed := claimer.claim(["high"], finish, RUN_AT)) is not None:
        assert isinstance(claimed, Claimed)
        got.append(claimed.raw)
        finish = SUCCESS
    assert got == items
    assert not r.exists(keys.worker(WID), keys.raw_payload(WID))


def test_a_slot_connection_takes_a_large_item_without_the_raw_list_copy(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis
) -> None:
    claimer, keys = slot_claimer
    item = big_payload()
    r.rpush(keys.queue("high"), item)
    r.config_resetstat()
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", item, True)
    assert calls(r, "lmove") == 0 and calls(r, "exec") == 1
    assert (r.get(keys.worker(WID)) or b"").endswith(b',"payload":' + item + b"}")
    assert not r.exists(keys.queue("high"), keys.raw_payload(WID))


def _meanwhile(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> None:
    """``action`` runs once while the worker checks the item it read (after WATCH)."""
    real = large.checked_payload
    pending = [action]

    def checking(item: bytes) -> object:
        while pending:
            pending.pop()()
        return real(item)

    monkeypatch.setattr(large, "checked_payload", checking)


def test_a_push_while_the_item_is_checked_neither_loses_nor_repeats_a_job(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = slot_claimer
    item = big_payload()
    r.rpush(keys.queue("high"), item)
    _meanwhile(monkeypatch, lambda: r.rpush(keys.queue("high"), b'{"class":"Late","args":[]}'))
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", item, True)
    assert r.lrange(keys.queue("high"), 0, -1) == [b'{"class":"Late","args":[]}']
    assert (r.get(keys.worker(WID)) or b"").endswith(b',"payload":' + item + b"}")


def test_a_large_item_another_worker_took_while_it_was_checked_is_not_taken_twice(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = slot_claimer
    first, second = big_payload(), big_payload(60_000)
    r.rpush(keys.queue("high"), first, second)
    _meanwhile(monkeypatch, lambda: r.lpop(keys.queue("high")))  # the other worker's
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", second, True)
    assert not r.exists(keys.queue("high"), keys.raw_payload(WID))


def test_a_reconnect_between_the_read_and_the_take_does_not_take_blind(
    slot_claimer: tuple[Claimer, Keys], r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failover swaps the slot's connection, and its WATCH dies with the old one: the
    transaction must not run unwatched on the new one, where it would trim whatever heads
    the queue by then (another worker's job) and show the item read before."""
    claimer, keys = slot_claimer
    first, second = big_payload(), big_payload(60_000)
    r.rpush(keys.queue("high"), first, second)

    def failover() -> None:
        assert claimer.conn.connection is not None
        claimer.conn.connection.disconnect()  # type: ignore[no-untyped-call]
        r.lpop(keys.queue("high"))  # another worker takes the item read

    _meanwhile(monkeypatch, failover)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", second, True)
    assert not r.exists(keys.queue("high"))
    assert (r.get(keys.worker(WID)) or b"").endswith(b',"payload":' + second + b"}")
