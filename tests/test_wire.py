"""wire.py against bytes and values written by real Ruby Resque (shared/golden)."""

from __future__ import annotations

import calendar
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import GOLDEN

from pyresqueworker.protocol import wire

# The golden cases' `ruby_args`, decoded by hand into the Python values that mean the same.
GOLDEN_ARGS: dict[str, list[Any]] = {
    "no_args": [],
    "ints_and_strings": [1, "two", -3],
    "floats": [1.0, 2.5, 1.0e20, 1.0e-07, -0.0, 123456789.123],
    "unicode": ["é", "日本語", "emoji 😀", 'quote " backslash \\ slash /'],
    "control_chars": ["tab\tnewline\n", "\x01\x1f", "\u2028\u2029"],
    "nil_bool": [None, True, False],
    "nested": [{"a": [1, {"b": None}], "c": {}}, []],
    "symbol_keys": [{"a": 1, "b": "sym"}],  # Ruby symbols are strings on the wire
    "big_int": [4611686018427387904, 18446744073709551616, -9223372036854775808],
    "html": ["<script>alert(1)</script>", "&amp;"],
}

EPOCH = 1705312200  # 2024-01-15 09:50:00 UTC (winter: Berlin is CET, +01:00)
SUMMER = 1721037000  # 2024-07-15 09:50:00 UTC (summer: Berlin is CEST, +02:00)


def load_golden(name: str) -> Any:
    with open(GOLDEN / name, encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture
def tz() -> Iterator[Any]:
    """Switch the process time zone; the original is restored afterwards."""
    saved = os.environ.get("TZ")

    def switch(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield switch
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


# -- JSON ----------------------------------------------------------------------------------


def test_golden_cases_are_all_covered() -> None:
    assert set(load_golden("enqueue-jsongem.json")) == set(GOLDEN_ARGS)


@pytest.mark.parametrize("case", sorted(GOLDEN_ARGS))
def test_encode_job_matches_ruby_oj_bytes(case: str) -> None:
    golden = load_golden("enqueue-oj.json")[case]["bytes"]
    assert wire.encode_job("Golden::Job", GOLDEN_ARGS[case]) == golden


def test_oj_differs_from_json_gem_only_in_negative_zero() -> None:
    # We write what Oj writes (what most Rails apps load); the json gem prints 0.0 as -0.0 for
    # a negative zero and nothing else differs.
    oj, gem = load_golden("enqueue-oj.json"), load_golden("enqueue-jsongem.json")
    differing = {case for case in gem if oj[case]["bytes"] != gem[case]["bytes"]}
    assert differing == {"floats"}
    assert oj["floats"]["bytes"] == gem["floats"]["bytes"].replace("-0.0", "0.0")


@pytest.mark.parametrize(
    ("value", "ruby"),
    [
        (1.0e20, "1.0e+20"),
        (1.0e-07, "1.0e-07"),
        (-0.0, "0.0"),
        (1.0, "1.0"),
        (2.5e-5, "2.5e-05"),
        (1.5e300, "1.5e+300"),
        (123456789.123, "123456789.123"),
    ],
)
def test_floats_are_written_as_ruby_writes_them(value: float, ruby: str) -> None:
    assert wire.dumps(value) == ruby
    assert wire.dumps({"x": [value]}) == '{"x":[' + ruby + "]}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        wire.dumps([value])
    with pytest.raises(ValueError):
        wire.dumps([1e20, value])  # the slow (Ruby float) path refuses them too


def test_loads_round_trips_golden_and_rejects_what_ruby_rejects() -> None:
    for case in load_golden("enqueue-oj.json").values():
        assert wire.dumps(wire.loads(case["bytes"].encode())) == case["bytes"]
    for bad in (b"not json", b'{"a":NaN}', b"\xff\xfe", b'{"class":'):
        with pytest.raises(wire.DecodeError):
            wire.loads(bad)


# -- time formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "failed_at", "started_at", "heartbeat"),
    [
        ("UTC", EPOCH, "2024/01/15 09:50:00 UTC", "2024-01-15 09:50:00 +0000",
         "2024-01-15T09:50:00+00:00"),
        ("Europe/Berlin", EPOCH, "2024/01/15 10:50:00 CET", "2024-01-15 10:50:00 +0100",
         "2024-01-15T10:50:00+01:00"),
        ("Europe/Berlin", SUMMER, "2024/07/15 11:50:00 CEST", "2024-07-15 11:50:00 +0200",
         "2024-07-15T11:50:00+02:00"),
    ],
)
def test_time_formats(
    tz: Any, zone: str, now: int, failed_at: str, started_at: str, heartbeat: str
) -> None:
    tz(zone)
    assert wire.failed_at(now) == failed_at
    assert wire.started_at(now) == started_at
    assert wire.heartbeat_value(now) == heartbeat
    # run_at is UTC with a literal Z whatever the local zone.
    assert wire.run_at(now) == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    assert wire.run_at(EPOCH) == "2024-01-15T09:50:00Z"


def test_heartbeat_truncates_to_whole_server_seconds(tz: Any) -> None:
    tz("UTC")
    assert wire.heartbeat_value(EPOCH + 0.9) == "2024-01-15T09:50:00+00:00"  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T09:50:00+00:00", EPOCH),  # Ruby heartbeat, UTC host
        ("2024-01-15T10:50:00+01:00", EPOCH),  # Ruby heartbeat, Berlin host
        ("2024-01-15 10:50:00 +0100", EPOCH),  # Ruby Time#to_s (:started)
        ("2024-01-15T09:50:00Z", EPOCH),  # run_at, goworker RFC 3339
        ("2024-01-15T09:50:00.123456789Z", EPOCH + 0.123456789),  # goworker RFC3339Nano
        ("2024-01-15 09:50:00.5 +0000 UTC m=+0.001200", EPOCH + 0.5),  # Go time.String()
        ("2024/01/15 09:50:00 UTC", EPOCH),  # failed_at
        ("1705312200", EPOCH),  # pyres epoch seconds
        ("1705312200.25", EPOCH + 0.25),
        (b"2024-01-15T09:50:00+00:00", EPOCH),
    ],
)
def test_parse_time_reads_every_clients_format(
    tz: Any, zone: str, text: Any, expected: float
) -> None:
    tz(zone)
    assert wire.parse_time(text) == pytest.approx(expected, abs=1e-6)


def test_parse_time_without_zone_is_local_time(tz: Any) -> None:
    # resque-retry's failed_at and pre-3.0 retried_at carry no zone: they mean local time.
    tz("Europe/Berlin")
    assert wire.parse_time("2024/01/15 10:50:00") == EPOCH
    assert wire.parse_time("2024/01/15 10:50:00 CET") == EPOCH


@pytest.mark.parametrize(
    "garbage",
    [None, "", "   ", "garbage", "2024-13-45T00:00:00Z", "15/01/2024", b"\xff\xfe", 42, [],
     "1e5"],
)
def test_parse_time_returns_none_for_garbage(garbage: Any) -> None:
    assert wire.parse_time(garbage) is None


# -- worker ids ----------------------------------------------------------------------------


def test_worker_id_parse_ruby_id() -> None:
    worker = wire.WorkerId.parse("web1:4242:high,low")
    assert (worker.host, worker.pid, worker.queues) == ("web1", "4242", ("high", "low"))
    assert worker.pid_number == 4242
    assert str(worker) == "web1:4242:high,low"
    assert wire.WorkerId.parse(b"web1:4243:*").queues == ("*",)


@pytest.mark.parametrize(
    ("text", "pid", "pid_number", "queues"),
    [
        ("web1:4242-0:high,high,low", "4242-0", 4242, ("high", "high", "low")),
        ("web1:4242-poller:high", "4242-poller", 4242, ("high",)),
        ("web1:abc:q", "abc", 0, ("q",)),  # Ruby "abc".to_i == 0
    ],
)
def test_worker_id_parse_goworker_and_odd_pids(
    text: str, pid: str, pid_number: int, queues: tuple[str, ...]
) -> None:
    worker = wire.WorkerId.parse(text)
    assert (worker.pid, worker.pid_number, worker.queues) == (pid, pid_number, queues)
    assert str(worker) == text


def test_worker_id_parse_keeps_colons_in_the_queue_part() -> None:
    # split(':', 3) as Worker.find does.
    assert wire.WorkerId.parse("h:1:a:b,c").queues == ("a:b", "c")


@pytest.mark.parametrize("text", ["", "nohost", "host:1", "host:1:"])
def test_worker_id_parse_rejects_ids_ruby_cannot_use(text: str) -> None:
    with pytest.raises(ValueError):
        wire.WorkerId.parse(text)


def test_worker_id_build() -> None:
    assert str(wire.WorkerId.build("web1", 4242, ["high", "low"])) == "web1:4242:high,low"
    assert str(wire.WorkerId.build("web1", 4242, ["high"], slot=3)) == "web1:4242-3:high"
    assert wire.WorkerId.build("web1", 4242, ["q"], slot=3).pid_number == 4242


@pytest.mark.parametrize("queues", [[], [""], ["a:b"], ["a,b"]])
def test_worker_id_build_rejects_queues_that_break_the_id(queues: list[str]) -> None:
    with pytest.raises(ValueError):
        wire.WorkerId.build("web1", 1, queues)


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["resque", "resque:"])
def test_keys_default_namespace_spellings(namespace: str) -> None:
    keys = wire.Keys(namespace)
    worker = "web1:4242:high,low"
    assert keys.ns == "resque:"
    assert keys.queues == "resque:queues"
    assert keys.queue("high") == "resque:queue:high"
    assert keys.workers == "resque:workers"
    assert keys.worker(worker) == "resque:worker:web1:4242:high,low"
    assert keys.worker_started(worker) == "resque:worker:web1:4242:high,low:started"
    assert keys.heartbeats == "resque:workers:heartbeat"
    assert keys.prune_lock == "resque:pruning_dead_workers_in_progress"
    assert keys.stat("processed") == "resque:stat:processed"
    assert keys.stat("failed", worker) == "resque:stat:failed:web1:4242:high,low"
    assert keys.failed == "resque:failed"
    assert keys.pause_all == "resque:pause-all-workers"
    assert keys.delayed_schedule == "resque:delayed_queue_schedule"
    assert keys.delayed(1705312200.9) == "resque:delayed:1705312200"  # type: ignore[arg-type]
    assert keys.delayed_member(1705312200) == "delayed:1705312200"
    assert keys.timestamps('{"class":"X"}') == 'resque:timestamps:{"class":"X"}'
    assert keys.scheduler_master_lock == "resque:resque:resque_scheduler_master_lock"
    assert keys.paused_queues == "resque:pyresque:paused-queues"
    assert keys.strip("resque:queue:high") == "queue:high"  # noqa: B005 (not str.strip)
    assert keys.strip("other:key") == "other:key"  # noqa: B005


def test_keys_cluster_hash_tag_namespace() -> None:
    keys = wire.Keys("{resque}:")
    assert keys.queue("q") == "{resque}:queue:q"
    assert keys.failed == "{resque}:failed"
    assert wire.Keys("{resque}").ns == "{resque}:"


def test_keys_reject_empty_namespace() -> None:
    with pytest.raises(ValueError):
        wire.Keys("")


def test_keys_name_every_key_of_a_real_ruby_worker() -> None:
    state = load_golden("worker-state.json")
    keys = wire.Keys()
    worker = "vm:30579:high,low"
    produced = {
        keys.failed, keys.prune_lock, keys.queues, keys.stat("failed"),
        keys.stat("failed", worker), keys.stat("processed"), keys.stat("processed", worker),
        keys.worker(worker), keys.worker_started(worker), keys.workers, keys.heartbeats,
    }
    assert produced == set(state)


# -- failure entries and worker values -----------------------------------------------------


def test_failure_entry_reproduces_ruby_bytes() -> None:
    golden = load_golden("worker-state.json")["resque:failed"]["value"]
    for raw in golden:
        entry = json.loads(raw)
        built = wire.failure_entry(
            failed_at_text=entry["failed_at"],
            payload=entry["payload"],
            exception=entry["exception"],
            error=entry["error"],
            backtrace=entry["backtrace"],
            worker=entry["worker"],
            queue=entry["queue"],
        )
        assert built == raw


def test_failure_entry_key_order_and_raw_payload() -> None:
    raw_payload = '{"class":"X","args":[1.0e+20],"extra":{"b":1,"a":2}}'
    built = wire.failure_entry(
        failed_at_text="2024/01/15 09:50:00 UTC",
        payload=None,
        exception="ValueError",
        error="bad",
        backtrace=["app.py:3:in `run'"],
        worker="web1:1:q",
        queue="q",
        raw_payload=raw_payload,
    )
    pairs = json.loads(built, object_pairs_hook=lambda items: items)
    assert [key for key, _ in pairs] == [
        "failed_at", "payload", "exception", "error", "backtrace", "worker", "queue",
    ]
    assert ',"payload":' + raw_payload + "," in built  # spliced byte for byte


def test_worker_value_reproduces_ruby_bytes() -> None:
    golden = load_golden("worker-state.json")["resque:worker:vm:30579:high,low"]["value"]
    built = wire.worker_value("low", "2026-11-23T07:35:33Z", '{"class":"RubySlow","args":[2]}')
    assert built == golden


def test_golden_worker_state_parses_with_our_parsers(tz: Any) -> None:
    tz("UTC")  # the golden worker ran with TZ=UTC
    state = load_golden("worker-state.json")
    (worker_text,) = state["resque:workers"]["value"]
    worker = wire.WorkerId.parse(worker_text)
    assert (worker.host, worker.pid_number, worker.queues) == ("vm", 30579, ("high", "low"))

    moment = calendar.timegm((2026, 11, 23, 7, 35, 33, 0, 0, 0))
    started = state[f"resque:worker:{worker_text}:started"]["value"]
    heartbeat = state["resque:workers:heartbeat"]["value"][worker_text]
    job = json.loads(state[f"resque:worker:{worker_text}"]["value"])
    failed_at = json.loads(state["resque:failed"]["value"][0])["failed_at"]
    for text in (started, heartbeat, job["run_at"], failed_at):
        assert wire.parse_time(text) == moment
    # ...and we write the same text for the same moment.
    assert wire.started_at(moment) == started
    assert wire.heartbeat_value(moment) == heartbeat
    assert wire.run_at(moment) == job["run_at"]
    assert wire.failed_at(moment) == failed_at


def test_loads_refuses_unpaired_surrogate_escapes_but_keeps_pairs() -> None:
    assert wire.loads(b'{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    with pytest.raises(wire.DecodeError, match="surrogate"):
        wire.loads(b'{"a":"\\ud800"}')
    with pytest.raises(wire.DecodeError, match="surrogate"):
        wire.loads(b'["x", {"k": "\\uDC00"}]')


def test_negative_zero_is_written_as_ruby_writes_it() -> None:
    # Oj (Resque's encoder) writes -0.0 as 0.0; Resque.dequeue and remove_delayed match bytes.
    assert wire.encode_job("Scale", [-0.0, {"by": -0.0}]) == (
        '{"class":"Scale","args":[0.0,{"by":0.0}]}')
