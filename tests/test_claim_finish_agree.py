"""The two halves of a finish agree: in a run of large items a success is finished by a MULTI
written in Python (``Claimer._finish_then_read_ahead``) instead of the claim script's Lua. The
same job, finished each way from the same Redis state, must leave Redis in the same state, so
a change to one half that the other does not follow fails here."""

from __future__ import annotations

import json
from typing import Any

import redis
from claim_helpers import RUN_AT, WID

from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._claim import NO_FINISH, SUCCESS, Claimed, Claimer


def big(n: int) -> bytes:
    return json.dumps({"class": "Big", "args": [n, "x" * 60_000]}).encode()


def state(r: redis.Redis, keys: Keys) -> dict[str, Any]:
    """What a finish touches, without what differs by design between two runs."""
    worker = r.get(keys.worker(WID))
    held = json.loads(worker) if worker else None
    if isinstance(held, dict):
        held.pop("run_at", None)
    seq_ttl = r.ttl(keys.claim_seq(WID))
    return {
        "keys": sorted(k.decode() for k in r.keys("*")),
        "processed": r.get(keys.stat("processed")),
        "processed by worker": r.get(keys.stat("processed", WID)),
        "failed": r.get(keys.stat("failed")),
        "worker key": held,
        "raw list": r.lrange(keys.raw_payload(WID), 0, -1),
        "queue": r.lrange(keys.queue("high"), 0, -1),
        "sequence": r.get(keys.claim_seq(WID)),
        "sequence expires": seq_ttl > 0,
    }


def finish_one(r: redis.Redis, *, with_script: bool) -> dict[str, Any]:
    """Take a large item, then finish it with the next claim, by one half or the other."""
    r.flushall()
    keys = Keys("resque:")
    r.rpush(keys.queue("high"), big(0), big(1), big(2))
    claimer = Claimer(r, keys, WID)
    first = claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert isinstance(first, Claimed)
    if with_script:
        claimer.state.read_ahead = None  # (the next claim asks the script, as after a small item)
    second = claimer.claim(["high"], SUCCESS, RUN_AT)
    assert isinstance(second, Claimed) and second.raw == big(1)
    return state(r, keys)


def test_the_python_finish_of_a_large_run_leaves_what_the_lua_finish_leaves(
    redis_url: str,
) -> None:
    conn = redis.Redis.from_url(redis_url, single_connection_client=True)
    try:
        by_lua = finish_one(conn, with_script=True)
        by_python = finish_one(conn, with_script=False)
    finally:
        conn.close()
    assert by_python == by_lua
    assert by_lua["processed"] == b"1" and by_lua["processed by worker"] == b"1"
