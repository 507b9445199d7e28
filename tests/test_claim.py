"""The claim script: atomic pop-into-worker-key, completion folding, pause, bad payloads."""

from __future__ import annotations

import json
import time

import pytest
import redis
from claim_helpers import RUN_AT, WID, cut_reply, make

from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker import _claim as fetch
from pyresqueworker.worker._claim import (
    NO_FINISH,
    PAUSED,
    SUCCESS,
    Claimed,
    Claimer,
    Finish,
    parse_worker_value,
)


def test_claim_moves_the_job_into_the_worker_key_in_resque_format(r: redis.Redis) -> None:
    claimer, keys = make(r)
    payload = '{"class":"Archive","args":[35,"tar","é/"]}'.encode()
    r.rpush(keys.queue("low"), payload)
    claimed = claimer.claim(["high", "low"], NO_FINISH, RUN_AT)
    assert claimed == Claimed("low", payload, True)
    assert r.llen(keys.queue("low")) == 0
    assert r.get(keys.worker(WID)) == (
        b'{"queue":"low","run_at":"2024-01-15T09:50:00Z","payload":' + payload + b"}"
    )


def test_queues_are_tried_in_the_given_order(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("low"), b'{"class":"L"}')
    r.rpush(keys.queue("high"), b'{"class":"H"}')
    first = claimer.claim(["low", "high"], NO_FINISH, RUN_AT)
    assert isinstance(first, Claimed) and first.queue == "low"


def test_completion_is_folded_into_the_next_claim_and_counts_like_resque(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A","args":[]}', b'{"class":"B","args":[]}')
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    claimer.claim(["high"], Finish("2", '{"failure":1}'), RUN_AT)
    assert json.loads(r.get(keys.worker(WID)) or b"")["payload"]["class"] == "B"
    assert claimer.claim(["high"], SUCCESS, RUN_AT) is None
    assert not r.exists(keys.worker(WID))
    stats = {k: int(r.get(keys.stat(*k)) or 0) for k in
             [("processed",), ("failed",), ("processed", WID), ("failed", WID)]}
    # Resque counts a failed job as processed too.
    assert stats == {("processed",): 2, ("failed",): 1, ("processed", WID): 2, ("failed", WID): 1}
    assert r.lrange(keys.failed, 0, -1) == [b'{"failure":1}']


def test_finishing_twice_after_a_lost_reply_counts_once(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A"}')
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    claimer.claim([], Finish("2", "{}"), "")
    claimer.claim([], Finish("2", "{}"), "")
    assert r.get(keys.stat("processed")) == b"1"
    assert r.llen(keys.failed) == 1


def test_dirty_exit_finish_writes_the_failure_without_stats(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A"}')
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    claimer.claim([], Finish("3", "{}"), "")
    assert r.llen(keys.failed) == 1 and not r.exists(keys.stat("processed"), keys.stat("failed"))


def test_pause_all_workers_is_honoured_case_and_space_insensitively(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A"}')
    r.set(keys.pause_all, " True\n")
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == PAUSED
    r.set(keys.pause_all, "false")
    assert isinstance(claimer.claim(["high"], NO_FINISH, RUN_AT), Claimed)


def test_paused_queue_is_skipped_inside_the_claim(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"H"}')
    r.rpush(keys.queue("low"), b'{"class":"L"}')
    r.sadd(keys.paused_queues, "high")
    claimed = claimer.claim(["high", "low"], NO_FINISH, RUN_AT)
    assert isinstance(claimed, Claimed) and claimed.queue == "low"
    assert r.llen(keys.queue("high")) == 1


def test_invalid_payloads_stay_out_of_the_worker_key_and_are_kept_byte_for_byte(
    r: redis.Redis,
) -> None:
    claimer, keys = make(r)
    bad = [b"not json", b'{"class":"A","args":["\xff"]}', b"[1,2]", b'{"class":',
           b"\xed\xa0\x80{}", b'{"a":"\xc3\x28"}', b'{"a":"\xe0\x80\xaf"}']
    r.rpush(keys.queue("high"), *bad)
    for raw in bad:
        claimed = claimer.claim(["high"], SUCCESS, RUN_AT)
        assert claimed == Claimed("high", raw, False)
        held = json.loads(r.get(keys.worker(WID)) or b"")  # what Ruby reads stays valid JSON
        assert held["payload"] == f"invalid payload ({len(raw)} bytes)"
        assert r.lindex(keys.raw_payload(WID), 0) == raw
    claimer.claim([], SUCCESS, "")
    assert not r.exists(keys.worker(WID), keys.raw_payload(WID))


def test_valid_utf8_of_every_length_is_accepted(r: redis.Redis) -> None:
    claimer, keys = make(r)
    text = "é日本語😀\u2028" * 3
    raw = ('{"class":"A","args":["' + text + '"]}').encode()
    r.rpush(keys.queue("high"), raw)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", raw, True)


def test_payloads_over_a_megabyte_are_shown_byte_for_byte_too(r: redis.Redis) -> None:
    claimer, keys = make(r)
    big = b'{"class":"A","args":["' + b"x" * 2_000_000 + b'"]}'
    r.rpush(keys.queue("high"), big)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", big, True)
    assert r.get(keys.worker(WID)) == (
        b'{"queue":"high","run_at":"' + RUN_AT.encode() + b'","payload":' + big + b"}")
    assert not r.exists(keys.raw_payload(WID))


def test_hash_tag_namespace_works(r: redis.Redis) -> None:
    claimer, keys = make(r, "{resque}:")
    assert keys.queue("high") == "{resque}:queue:high"
    r.rpush(keys.queue("high"), b'{"class":"A"}')
    assert isinstance(claimer.claim(["high"], NO_FINISH, RUN_AT), Claimed)
    assert r.exists("{resque}:worker:" + WID)


def test_script_is_reloaded_after_a_script_flush(r: redis.Redis) -> None:
    claimer, keys = make(r)
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) is None
    r.script_flush()
    r.rpush(keys.queue("high"), b'{"class":"A"}')
    assert isinstance(claimer.claim(["high"], NO_FINISH, RUN_AT), Claimed)


def test_blpop_mode_adopts_into_the_worker_key(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("low"), b'{"class":"A"}')
    popped = claimer.blpop(["high", "low"], 0.1)
    assert popped == ("low", b'{"class":"A"}')
    claimer.adopt(popped[0], popped[1], NO_FINISH, RUN_AT)
    assert json.loads(r.get(keys.worker(WID)) or b"")["queue"] == "low"
    started = time.monotonic()
    assert claimer.blpop(["high"], 0.05) is None
    assert time.monotonic() - started >= 0.04


def test_requeue_puts_a_held_job_back_at_the_front(r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A"}', b'{"class":"B"}')
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert claimer.requeue("high", b'{"class":"A"}') is True
    assert claimer.requeue("high", b'{"class":"A"}') is False
    assert r.lrange(keys.queue("high"), 0, -1) == [b'{"class":"A"}', b'{"class":"B"}']


def _lose_the_reply_that_claimed_b(r: redis.Redis, monkeypatch: pytest.MonkeyPatch
                                   ) -> tuple[Claimer, Keys]:
    """A slot ran A; its next call finished A and claimed B, and its reply was lost."""
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A"}', b'{"class":"B"}', b'{"class":"C"}')
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    cut_reply(monkeypatch, after_running=True)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], SUCCESS, RUN_AT)
    monkeypatch.undo()
    return claimer, keys


def test_a_reply_lost_after_the_call_ran_neither_loses_nor_refinishes(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = _lose_the_reply_that_claimed_b(r, monkeypatch)
    again = claimer.claim(["high"], SUCCESS, RUN_AT)  # the slot retries with the same finish
    assert again == Claimed("high", b'{"class":"B"}', True)
    assert r.get(keys.stat("processed")) == b"1"
    assert r.lrange(keys.queue("high"), 0, -1) == [b'{"class":"C"}']


def test_a_lost_reply_whose_resolution_is_cut_too_still_gives_the_job(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three cuts within a second (the soak's fault): the first loses the reply of a call that
    # claimed B; the next cuts the resolution after it read the worker key. The retry must
    # resolve again, not send A's finish, which would delete B from the worker key.
    claimer, keys = _lose_the_reply_that_claimed_b(r, monkeypatch)

    def cut_read(*_args: object) -> bytes:
        raise redis.ConnectionError("connection cut")

    monkeypatch.setattr(fetch, "read_raw", cut_read)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], SUCCESS, RUN_AT)  # resolving: the raw list's read is cut
    monkeypatch.undo()
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", b'{"class":"B"}', True)
    assert r.get(keys.stat("processed")) == b"1"
    assert r.lrange(keys.queue("high"), 0, -1) == [b'{"class":"C"}']


def test_a_call_that_never_ran_is_simply_sent_again(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A"}', b'{"class":"B"}')
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    cut_reply(monkeypatch, after_running=False)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], SUCCESS, RUN_AT)
    monkeypatch.undo()
    assert claimer.claim(["high"], SUCCESS, RUN_AT) == Claimed("high", b'{"class":"B"}', True)
    assert r.get(keys.stat("processed")) == b"1"


def test_a_lost_reply_that_claimed_nothing_claims_afresh(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = make(r)
    cut_reply(monkeypatch, after_running=True)
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["high"], NO_FINISH, RUN_AT)
    monkeypatch.undo()
    r.rpush(keys.queue("high"), b"not json")
    assert claimer.claim(["high"], NO_FINISH, RUN_AT) == Claimed("high", b"not json", False)


def test_parse_worker_value_reads_ruby_values_and_invalid_placeholders() -> None:
    ruby = (b'{"queue":"low","run_at":"2026-11-23T07:35:33Z",'
            b'"payload":{"class":"RubySlow","args":[2]}}')
    assert parse_worker_value(ruby) == Claimed("low", b'{"class":"RubySlow","args":[2]}', True)
    placeholder = b'{"queue":"q","run_at":"x","payload":"invalid payload (4 bytes)"}'
    assert parse_worker_value(placeholder, b"bad\xff") == Claimed("q", b"bad\xff", False)
    assert parse_worker_value(b"garbage") is None


def test_the_claim_sequence_key_expires_on_its_own(r: redis.Redis) -> None:
    # A Ruby prune of a kill -9'd worker deletes what Resque knows, not this key.
    claimer, keys = make(r)
    r.rpush(keys.queue("q"), '{"class":"A","args":[]}')
    claimer.claim(["q"], NO_FINISH, "2026-01-01T00:00:00Z")
    assert 0 < r.ttl(keys.claim_seq(WID)) <= 86400


def test_the_sequence_key_expiry_is_renewed_hourly_and_kept_between(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = make(r)
    seq = keys.claim_seq(WID)
    claimer.claim(["q"], NO_FINISH, RUN_AT)
    r.expire(seq, 500)  # as if renewed long ago
    claimer.claim(["q"], NO_FINISH, RUN_AT)
    assert 0 < r.ttl(seq) <= 500  # KEEPTTL: the cheaper SET between renewals
    monkeypatch.setattr(fetch, "_RENEW_SEQ_EVERY", 0.0)
    claimer.claim(["q"], NO_FINISH, RUN_AT)
    assert r.ttl(seq) > 500


def test_a_lost_call_renews_the_sequence_expiry_on_the_next(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimer, keys = make(r)
    cut_reply(monkeypatch, after_running=False)  # the very first call (the renewal) is lost
    with pytest.raises(redis.ConnectionError):
        claimer.claim(["q"], NO_FINISH, RUN_AT)
    monkeypatch.undo()
    claimer.claim(["q"], NO_FINISH, RUN_AT)
    assert 0 < r.ttl(keys.claim_seq(WID)) <= 86400
