"""ActiveJob interop: decoding Rails' JobWrapper payloads and producing them (spec §16)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import GOLDEN
from hypothesis import given
from hypothesis import strategies as st

from pyresqueworker.jobs.activejob import (
    JOB_WRAPPER,
    GlobalID,
    RubyModule,
    RubyRange,
    RubySymbol,
    decode_active_job,
    deserialize_arguments,
    job_data,
    serialize_arguments,
    wrapper_payload,
)
from pyresqueworker.jobs.registry import PayloadError, Registry, default_registry
from pyresqueworker.protocol.job import Job, JobCall
from pyresqueworker.protocol.wire import dumps, encode_job, loads

GOLDEN_RAW = (GOLDEN / "activejob-6.1-payload.json").read_bytes().strip()
UTC = timezone.utc
S = "ActiveJob::Serializers::"


def as_job(payload: Any) -> Job:
    raw = dumps(payload).encode() if not isinstance(payload, bytes) else payload
    return Job("default", raw, loads(raw))


def wrapped(arguments: list[Any], **extra: Any) -> Job:
    return as_job(wrapper_payload({"job_class": "HelloJob", "arguments": arguments, **extra}))


def roundtrip(args: list[Any], kwargs: dict[str, Any] | None = None) -> tuple[list[Any], Any]:
    """Python -> ActiveJob JSON bytes -> Python, through the registry's decoder."""
    data = job_data("EchoJob", serialize_arguments(args, kwargs or {}))
    call = Registry().decode(as_job(encode_job(JOB_WRAPPER, [data]).encode()))
    return call.args, call.kwargs


# -- the golden payload written by Rails 6.1 ------------------------------------------------


def test_golden_payload_decodes_to_python_values() -> None:
    call = Registry().decode(as_job(GOLDEN_RAW))
    assert call.class_name == "HelloJob"
    assert call.args == ["world", 42, {"plain": 1, "sym": "x"}]
    assert call.kwargs == {"greeting": "hi", "at": datetime(2024, 1, 15, 9, 50, tzinfo=UTC)}
    assert call.kwargs["at"].utcoffset() == timedelta(0)
    hash_arg = call.args[2]
    assert [type(k) for k in hash_arg] == [str, RubySymbol]  # only "sym" was a Symbol key
    assert isinstance(hash_arg["sym"], RubySymbol)
    assert all(type(k) is str for k in call.kwargs)
    meta = call.metadata
    assert meta["job_id"] == "a256f527-6bc7-4824-b0c9-dceb9c4dc3f7"
    assert (meta["queue_name"], meta["executions"], meta["locale"]) == ("default", 0, "en")
    assert meta["exception_executions"] == {} and meta["timezone"] is None
    assert meta["enqueued_at"] == "2026-11-23T07:35:45Z" and meta["scheduled_at"] is None
    assert meta["provider_job_id"] is None and meta["priority"] is None


def test_serializing_the_golden_values_gives_rubys_bytes() -> None:
    golden = json.loads(GOLDEN_RAW)["args"][0]["arguments"]
    ours = serialize_arguments(
        ["world", 42, {"plain": 1, RubySymbol("sym"): RubySymbol("x")}],
        {"greeting": "hi", "at": datetime(2024, 1, 15, 9, 50, tzinfo=UTC)},
    )
    assert dumps(ours) == dumps(golden)


def test_the_decoder_is_on_every_registry_and_dispatches_on_job_class() -> None:
    for reg in (Registry(), default_registry):
        seen: list[Any] = []

        def hello(*args: Any, seen: list[Any] = seen, **kwargs: Any) -> None:
            seen.append((args, kwargs))

        reg.register("Golden::HelloJob", hello)
        payload = json.loads(GOLDEN_RAW)
        payload["args"][0]["job_class"] = "Golden::HelloJob"
        job = as_job(payload)
        assert reg.perform(job, reg.decode(job))
        assert seen[0][1]["greeting"] == "hi"


# -- each serializer ------------------------------------------------------------------------


def test_serialized_objects_decode() -> None:
    arguments = [
        {"_aj_serialized": S + "TimeSerializer", "value": "2024-01-15T10:50:00.123456789+01:00"},
        {"_aj_serialized": S + "DateTimeSerializer", "value": "2024-01-15T09:50:00.5-05:30"},
        {"_aj_serialized": S + "DateSerializer", "value": "2024-02-29"},
        {"_aj_serialized": S + "DurationSerializer", "value": 90,
         "parts": [[{"_aj_serialized": S + "SymbolSerializer", "value": "minutes"}, 1.5]]},
        {"_aj_serialized": S + "BigDecimalSerializer", "value": "0.123e2"},
        {"_aj_serialized": S + "RangeSerializer", "begin": 1, "end": None, "exclude_end": True},
        {"_aj_serialized": S + "ModuleSerializer", "value": "Admin::User"},
        {"_aj_globalid": "gid://shop/Admin%3A%3AUser/42"},
        {"_aj_serialized": "MoneySerializer", "cents": 5},
    ]
    args, kwargs = deserialize_arguments(arguments)
    plus1 = timezone(timedelta(hours=1))
    assert args[0] == datetime(2024, 1, 15, 10, 50, 0, 123456, tzinfo=plus1)
    assert args[0].utcoffset() == timedelta(hours=1)
    minus530 = timezone(-timedelta(hours=5, minutes=30))
    assert args[1] == datetime(2024, 1, 15, 9, 50, 0, 500000, tzinfo=minus530)
    assert args[2] == date(2024, 2, 29)
    assert args[3] == timedelta(seconds=90)
    assert args[4] == Decimal("12.3") and isinstance(args[4], Decimal)
    assert args[5] == RubyRange(1, None, True)
    assert args[6] == RubyModule("Admin::User")
    gid = args[7]
    assert isinstance(gid, GlobalID)
    assert (gid.app, gid.model, gid.id) == ("shop", "Admin::User", "42")
    assert args[8] == {"_aj_serialized": "MoneySerializer", "cents": 5}  # unknown: kept as is
    assert kwargs == {}


def test_time_with_zone_uses_the_named_zone_or_keeps_the_offset() -> None:
    known, unknown = deserialize_arguments([
        {"_aj_serialized": S + "TimeWithZoneSerializer",
         "value": "2024-07-01T12:00:00.000000000+02:00", "time_zone": "Europe/Berlin"},
        {"_aj_serialized": S + "TimeWithZoneSerializer",
         "value": "2024-07-01T12:00:00.000000000+02:00", "time_zone": "Nowhere/Special"},
    ])[0]
    assert isinstance(known.tzinfo, ZoneInfo) and known.tzinfo.key == "Europe/Berlin"
    assert known.hour == 12 and unknown.hour == 12
    assert unknown.utcoffset() == timedelta(hours=2)
    assert known == unknown  # the same instant


def test_hash_markers_are_removed_and_nested_values_decoded() -> None:
    args, kwargs = deserialize_arguments([
        {"a": 1, "_aj_hash_with_indifferent_access": True},
        {"outer": {"inner": {"_aj_serialized": S + "SymbolSerializer", "value": "v"},
                   "_aj_symbol_keys": ["inner"]}, "_aj_symbol_keys": []},
        [{"k": 1, "_aj_ruby2_keywords": ["k"]}],  # not the last argument: just a dict
        {"x": 2, "_aj_ruby2_keywords": ["x"]},
    ])
    assert args[0] == {"a": 1}
    assert args[1] == {"outer": {"inner": "v"}}
    assert isinstance(next(iter(args[1]["outer"])), RubySymbol)
    assert args[2] == [{"k": 1}]
    assert kwargs == {"x": 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs args"),
        (["nope"], "job_data must be a JSON object"),
        ([{"arguments": []}], "no job_class"),
        ([{"job_class": ""}], "no job_class"),
        ([{"job_class": "J", "arguments": {"a": 1}}], "must be a JSON array"),
        ([{"job_class": "J", "arguments": [{"_aj_serialized": S + "TimeSerializer",
                                             "value": "yesterday"}]}],
         "Error while trying to deserialize arguments of J: not an ISO 8601 time"),
        ([{"job_class": "J", "arguments": [{"_aj_serialized": S + "BigDecimalSerializer",
                                             "value": "1,5"}]}],
         "Error while trying to deserialize arguments of J"),
        ([{"job_class": "J", "arguments": [{"_aj_globalid": "http://x"}]}],
         "not a GlobalID URI"),
    ],
)
def test_bad_job_data_is_a_payload_error(args: list[Any], message: str) -> None:
    job = as_job({"class": JOB_WRAPPER, "args": args})
    with pytest.raises(PayloadError, match=message):
        Registry().decode(job)


def test_missing_arguments_mean_none() -> None:
    call = decode_active_job(as_job(wrapper_payload({"job_class": "J"})))
    assert call == JobCall("J", [], {}, call.metadata)


# -- producing ------------------------------------------------------------------------------


def test_serialize_arguments_shapes() -> None:
    berlin = datetime(2024, 7, 1, 12, 0, 0, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    out = serialize_arguments(
        [
            {"k": 1},
            (1, [2]),
            RubySymbol("s"),
            berlin,
            datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-3))),
            date(2024, 2, 29),
            timedelta(minutes=1, microseconds=500000),
            Decimal("12.30"),
            GlobalID.create("shop", "User", 42),
            RubyRange(1, date(2024, 1, 2), False),
            RubyModule("Admin"),
        ]
    )
    assert out == [
        {"k": 1, "_aj_symbol_keys": []},
        [1, [2]],
        {"_aj_serialized": S + "SymbolSerializer", "value": "s"},
        {"_aj_serialized": S + "TimeWithZoneSerializer",
         "value": "2024-07-01T12:00:00.123456000+02:00", "time_zone": "Europe/Berlin"},
        {"_aj_serialized": S + "TimeSerializer", "value": "2024-01-01T00:00:00.000000000-03:00"},
        {"_aj_serialized": S + "DateSerializer", "value": "2024-02-29"},
        {"_aj_serialized": S + "DurationSerializer", "value": 60.5,
         "parts": [[{"_aj_serialized": S + "SymbolSerializer", "value": "seconds"}, 60.5]]},
        {"_aj_serialized": S + "BigDecimalSerializer", "value": "12.30"},
        {"_aj_globalid": "gid://shop/User/42"},
        {"_aj_serialized": S + "RangeSerializer", "begin": 1,
         "end": {"_aj_serialized": S + "DateSerializer", "value": "2024-01-02"},
         "exclude_end": False},
        {"_aj_serialized": S + "ModuleSerializer", "value": "Admin"},
    ]


def test_kwargs_become_a_ruby2_keywords_hash_without_symbol_keys() -> None:
    out = serialize_arguments(["a"], {"x": 1, "y": {RubySymbol("z"): 2}})
    assert out == ["a", {"x": 1, "y": {"z": 2, "_aj_symbol_keys": ["z"]},
                         "_aj_ruby2_keywords": ["x", "y"]}]
    assert serialize_arguments(["a"], {}) == ["a"]


@pytest.mark.parametrize("key", ["_aj_globalid", "_aj_symbol_keys", "_aj_ruby2_keywords",
                                 "_aj_serialized", "_aj_hash_with_indifferent_access"])
def test_reserved_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValueError, match="reserved key"):
        serialize_arguments([{key: 1}])
    with pytest.raises(ValueError, match="reserved key"):
        serialize_arguments([], {key: 1})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({1: "a"}, ValueError),
        (datetime(2024, 1, 1), ValueError),  # naive: which zone would Ruby assume?
        (float("nan"), ValueError),
        (Decimal("sNaN"), ValueError),
        ({1, 2}, TypeError),
        (object(), TypeError),
        (b"bytes", TypeError),
    ],
)
def test_values_activejob_cannot_carry(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        serialize_arguments([value])


def test_round_trip_of_every_supported_type() -> None:
    values = [
        None, True, 3, 2.5, "text", "é/\u2028", [1, [2]], {"a": {"b": [1]}},
        {RubySymbol("sym"): RubySymbol("val"), "str": 1},
        datetime(2024, 1, 15, 9, 50, 0, 123456, tzinfo=UTC),
        datetime(2024, 1, 15, 9, 50, tzinfo=timezone(timedelta(hours=5, minutes=45))),
        datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("America/New_York")),
        date(1999, 12, 31), timedelta(days=2, seconds=3), timedelta(milliseconds=1500),
        Decimal("1E+2"), Decimal("-0.001"), GlobalID("gid://app/Post/7?tenant=1"),
        RubyRange(RubySymbol("a"), RubySymbol("z")), RubyModule("Foo::Bar"),
    ]
    args, kwargs = roundtrip(values, {"when": date(2024, 1, 1), "sym": RubySymbol("k")})
    assert args == values
    assert kwargs == {"when": date(2024, 1, 1), "sym": "k"}
    assert isinstance(args[8]["sym"], RubySymbol) and isinstance(kwargs["sym"], RubySymbol)
    assert args[11].tzinfo.key == "America/New_York"
    assert args[10].utcoffset() == timedelta(hours=5, minutes=45)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text().filter(lambda k: not k.startswith("_aj_")), children, max_size=4),
    max_leaves=12,
)


@given(st.lists(json_values, max_size=4),
       st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), json_values,
                       max_size=3))
def test_round_trip_of_plain_json_arguments(args: list[Any], kwargs: dict[str, Any]) -> None:
    assert roundtrip(args, kwargs) == (args, kwargs)


def test_job_data_key_order_and_formats() -> None:
    data = job_data(
        "HelloJob",
        serialize_arguments(["world"], {"greeting": "hi"}),
        queue_name="mail",
        job_id="0b5c-uuid",
        priority=10,
        locale="de",
        timezone="Berlin",
        enqueued_at=datetime(2024, 1, 15, 10, 50, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
        scheduled_at=1705312200.5,
    )
    assert list(data) == [
        "job_class", "job_id", "provider_job_id", "queue_name", "priority", "arguments",
        "executions", "exception_executions", "locale", "timezone", "enqueued_at", "scheduled_at",
    ]
    assert data["enqueued_at"] == "2024-01-15T09:50:00.123456000Z"
    assert data["scheduled_at"] == "2024-01-15T09:50:00.500000000Z"
    assert data["executions"] == 0 and data["exception_executions"] == {}
    assert data["provider_job_id"] is None
    assert dumps(wrapper_payload(data)).startswith(
        '{"class":"ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper","args":[{"job_class":'
        '"HelloJob","job_id":"0b5c-uuid","provider_job_id":null,"queue_name":"mail",'
        '"priority":10,"arguments":["world",{"greeting":"hi","_aj_ruby2_keywords":["greeting"]}]'
    )


def test_job_data_defaults() -> None:
    data = job_data("J", [])
    assert re.fullmatch(r"[0-9a-f-]{36}", data["job_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", data["enqueued_at"])
    assert data["scheduled_at"] is None and data["queue_name"] == "default"
    assert job_data("J", [], enqueued_at="2024-01-15T09:50:00Z")["enqueued_at"] == (
        "2024-01-15T09:50:00Z"
    )
    with pytest.raises(ValueError, match="naive"):
        job_data("J", [], enqueued_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        job_data("", [])


def test_global_id_validation() -> None:
    with pytest.raises(ValueError):
        GlobalID("gid://app/OnlyModel")
    assert GlobalID.create("a", "M", "x/y").id == "x/y"


@pytest.mark.ruby
def test_ruby_parses_what_we_write(ruby: str) -> None:
    """Ruby's Time.iso8601, Date.iso8601 and BigDecimal() read our values to the same thing."""
    values = serialize_arguments([
        datetime(2024, 1, 15, 9, 50, 0, 123456, tzinfo=UTC),
        datetime(2024, 1, 15, 9, 50, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
        date(2024, 2, 29),
        Decimal("12.30"),
        Decimal("-1E+20"),
    ])
    script = (
        "require 'json'; require 'time'; require 'date'; require 'bigdecimal';"
        "v = JSON.parse(STDIN.read).map { |h| h['value'] };"
        "puts Time.iso8601(v[0]).utc.strftime('%s.%N'); puts Time.iso8601(v[1]).utc_offset;"
        "puts Date.iso8601(v[2]).jd; puts BigDecimal(v[3]).to_s; puts BigDecimal(v[4]).to_s"
    )
    out = subprocess.run([ruby, "-e", script], input=dumps(values), capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [
        f"{int(datetime(2024, 1, 15, 9, 50, tzinfo=UTC).timestamp())}.123456000",
        str(-(3 * 3600 + 30 * 60)),
        str(date(2024, 2, 29).toordinal() + 1721425),
        "0.123e2",
        "-0.1e21",
    ]
