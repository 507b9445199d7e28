"""Script calls sent ahead of a slot's next claim (a tracked job's end): loaded once per
connection, sent again whole when the server lost the script, and kept for the next call when
Redis refused one (an OOM window may refuse it and pass the claim right after it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from pyresqueworker.protocol._resp import FastCaller, LuaScript

# Refused twice, then done: the refusal of an OOM window that ends.
FLAKY = LuaScript("if redis.call('INCR', KEYS[1]) < 3 then return redis.error_reply('OOM fake')"
                  " end return redis.call('SET', KEYS[2], ARGV[1])")


@pytest.fixture
def caller(redis_url: str) -> Iterator[FastCaller]:
    client = redis.Redis.from_url(redis_url, single_connection_client=True)
    yield FastCaller(client)
    client.close()


def test_a_refused_call_rides_on_the_next_requests_until_it_passes(caller: FastCaller,
                                                                   r: redis.Redis) -> None:
    caller.send_ahead((FLAKY.run(["tries", "done"], ["yes"]),))
    assert caller("PING") == b"PONG"  # the request's own reply, whatever the call ahead got
    assert caller.ahead and r.get("done") is None
    caller("PING")
    assert caller.ahead and r.get("done") is None
    caller("PING")
    assert not caller.ahead and r.get("done") == b"yes"
    assert r.get("tries") == b"3"


def test_the_script_is_loaded_once_per_connection_and_resent_when_lost(
        caller: FastCaller, r: redis.Redis) -> None:
    setter = LuaScript("return redis.call('INCR', KEYS[1])")
    r.config_resetstat()
    for _ in range(3):
        caller.send_ahead((setter.run(["n"], []),))
        caller("PING")
    stats = r.info("commandstats")
    # ("script|load" since Redis 7, "script" before)
    loads = stats.get("cmdstat_script|load", stats.get("cmdstat_script", {})).get("calls")
    assert loads == 1
    assert stats["cmdstat_evalsha"]["calls"] == 3
    r.script_flush()  # the server loses it; the connection stays
    caller.send_ahead((setter.run(["n"], []),))
    caller("PING")
    assert r.get("n") == b"4"  # sent again whole (EVAL), not lost


def test_the_same_call_is_not_sent_twice_in_one_write(caller: FastCaller, r: redis.Redis) -> None:
    counter = LuaScript("return redis.call('INCR', KEYS[1])")
    run = counter.run(["once"], [])
    caller.send_ahead((run,))
    caller.send_ahead((run,))  # a claim retried with the same completion
    caller("PING")
    assert r.get("once") == b"1"
