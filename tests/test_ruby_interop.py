"""Ruby and Python on one real Redis, through examples/ruby_client/resque_compat.rb.

The script re-implements Resque 3.0's side of the protocol with Ruby's own JSON and time
parsers (the resque gem cannot be installed here), so every test below is "Ruby writes, Python
reads" or "Python writes, Ruby reads" on the bytes in Redis. The negative tests show that the
Ruby checks reject what would break Ruby Resque or resque-web, so a passing check means something.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any, Optional

import pytest
import redis
from conftest import GOLDEN, RUBY_CLIENT

from pyresqueworker.client._client import Client
from pyresqueworker.protocol import failure, wire
from pyresqueworker.protocol.job import Job

pytestmark = pytest.mark.ruby

SCRIPT = RUBY_CLIENT / "resque_compat.rb"
KEYS = wire.Keys("resque")
FAILURE_KEYS = ["failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"]
JOB_WRAPPER = "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper"

# Ruby's bytes with MultiJson on Oj (the tests' Ruby loads Oj, as most Rails apps do).
with open(GOLDEN / "enqueue-oj.json", encoding="utf-8") as _handle:
    GOLDEN_ENQUEUE: dict[str, dict[str, str]] = json.load(_handle)
with open(GOLDEN / "activejob-6.1-payload.json", encoding="utf-8") as _handle:
    GOLDEN_ACTIVE_JOB: dict[str, Any] = json.load(_handle)


def run_ruby(
    ruby: str,
    redis_url: str,
    *args: str,
    expect: int = 0,
    ruby_code: Optional[str] = None,
) -> subprocess.CompletedProcess[str]:
    """Run a resque_compat.rb command (or Ruby code with the script loaded as a library)."""
    env = {**os.environ, "REDIS_URL": redis_url, "RESQUE_NAMESPACE": "resque"}
    if ruby_code is None:
        command = [ruby, str(SCRIPT), *args]
    else:
        command = [ruby, "-r", str(SCRIPT), "-e", ruby_code, *args]
    proc = subprocess.run(
        command, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120
    )
    if proc.returncode != expect:
        pytest.fail(
            f"{args or ruby_code}: exit {proc.returncode}, wanted {expect}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def json_lines(proc: subprocess.CompletedProcess[str]) -> list[Any]:
    # split("\n"), not splitlines(): Ruby writes U+2028 raw and splitlines() would cut there.
    return [json.loads(line) for line in proc.stdout.split("\n") if line]


def golden_args(case: str) -> list[Any]:
    args: list[Any] = wire.loads(GOLDEN_ENQUEUE[case]["bytes"])["args"]
    return args


@pytest.fixture(params=["UTC", "Europe/Berlin"])
def tz(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with this process (and so the Ruby child) in the given zone."""
    name: str = request.param
    if not os.path.exists(os.path.join("/usr/share/zoneinfo", name)):
        pytest.skip(f"tzdata has no {name}")
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield name
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(redis=r, namespace="resque")


# -- the scripts themselves ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resque_compat.rb", "enqueue_with_resque.rb"])
def test_scripts_are_valid_ruby_without_warnings(ruby: str, name: str) -> None:
    proc = subprocess.run(
        [ruby, "-wc", str(RUBY_CLIENT / name)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Syntax OK"
    assert proc.stderr == ""


def test_bad_usage_lists_every_command(ruby: str, redis_url: str) -> None:
    proc = run_ruby(ruby, redis_url, "no-such-command", expect=2)
    for command in [
        "enqueue",
        "dequeue",
        "check-workers",
        "check-failures",
        "requeue",
        "stats",
        "prune-check",
        "active-job",
        "check-active-job",
    ]:
        assert f"resque_compat.rb {command}" in proc.stderr
    run_ruby(ruby, redis_url, "requeue", expect=2)  # missing INDEX


# -- enqueue / dequeue: byte-exact both ways -------------------------------------------------


@pytest.mark.parametrize("case", sorted(GOLDEN_ENQUEUE))
def test_ruby_literal_args_give_the_golden_bytes(
    ruby: str, redis_url: str, r: redis.Redis, case: str
) -> None:
    """The script's encoder, fed the very Ruby values of the golden capture, writes its bytes."""
    code = 'ResqueCompat::Client.new.push(ARGV[0], "Golden::Job", eval(ARGV[1]))'
    run_ruby(ruby, redis_url, "golden", GOLDEN_ENQUEUE[case]["ruby_args"], ruby_code=code)
    assert r.lrange(KEYS.queue("golden"), 0, -1) == [GOLDEN_ENQUEUE[case]["bytes"].encode()]


@pytest.mark.parametrize("case", sorted(GOLDEN_ENQUEUE))
def test_ruby_enqueue_matches_golden_and_python(
    ruby: str, redis_url: str, r: redis.Redis, client: Client, case: str
) -> None:
    golden = GOLDEN_ENQUEUE[case]["bytes"]
    args = golden_args(case)
    queue = f"golden_{case}"
    # Python's own JSON (ASCII escapes, 1e+20): the bytes in Redis must come from Ruby.
    proc = run_ruby(ruby, redis_url, "enqueue", queue, "Golden::Job", json.dumps(args))
    assert proc.stdout.split("\n")[0] == golden
    assert r.lrange(KEYS.queue(queue), 0, -1) == [golden.encode()]
    assert r.smembers(KEYS.queues) == {queue.encode()}
    assert wire.encode_job("Golden::Job", args) == golden
    assert client.peek(queue, 0, 1) == [{"class": "Golden::Job", "args": args}]


@pytest.mark.parametrize("case", sorted(GOLDEN_ENQUEUE))
def test_python_enqueue_ruby_dequeue(
    ruby: str, redis_url: str, r: redis.Redis, client: Client, case: str
) -> None:
    args = golden_args(case)
    client.enqueue_to("interop", "Other::Job", *args)
    if args:  # with no args Ruby removes every Golden::Job, so only keep other args then
        client.enqueue_to("interop", "Golden::Job", *args, "extra")
    kept = r.lrange(KEYS.queue("interop"), 0, -1)  # the items written, as stored
    assert len(kept) == (2 if args else 1)
    client.enqueue_to("interop", "Golden::Job", *args)
    proc = run_ruby(ruby, redis_url, "dequeue", "interop", "Golden::Job", json.dumps(args))
    assert json_lines(proc) == [1]
    assert r.lrange(KEYS.queue("interop"), 0, -1) == kept


def test_ruby_dequeue_without_args_removes_the_whole_class(
    ruby: str, redis_url: str, r: redis.Redis, client: Client
) -> None:
    for n in range(3):
        client.enqueue_to("interop", "Archive", n)
    client.enqueue_to("interop", "Other", 1)
    proc = run_ruby(ruby, redis_url, "dequeue", "interop", "Archive", "[]")
    assert json_lines(proc) == [3]
    assert client.peek("interop", 0, 10) == [{"class": "Other", "args": [1]}]


# -- failures ------------------------------------------------------------------------------


def _perform(n: int) -> None:
    raise ValueError(f"boom {n}: é")


def python_failures(r: redis.Redis, now: int) -> tuple[list[str], list[str]]:
    """RPUSH a job failure and an undecodable-payload failure as the Python worker writes them.

    Returns the entries and the first entry's backtrace.
    """
    worker = str(wire.WorkerId.build(socket.gethostname(), os.getpid(), ["high", "low"]))
    try:
        _perform(3)
    except ValueError as exc:
        error = exc
    backtrace = failure.ruby_backtrace(error.__traceback__)
    entries = [
        wire.failure_entry(
            failed_at_text=wire.failed_at(now),
            payload={"class": "Archive", "args": [3, "tar"]},
            exception=failure.exception_name(error),
            error=failure.exception_message(error),
            backtrace=backtrace,
            worker=worker,
            queue="high",
        ),
        wire.failure_entry(
            failed_at_text=wire.failed_at(now),
            payload=None,
            exception=failure.DECODE_EXCEPTION,
            error="payload is not valid JSON",
            backtrace=[],
            worker=worker,
            queue="low",
        ),
    ]
    r.rpush(KEYS.failed, *entries)
    return entries, backtrace


def test_python_failures_pass_ruby_check(
    ruby: str, redis_url: str, r: redis.Redis, tz: str
) -> None:
    now = int(time.time())
    entries, backtrace = python_failures(r, now)
    lines = json_lines(run_ruby(ruby, redis_url, "check-failures"))
    assert [line["index"] for line in lines] == [0, 1]
    first, second = lines
    assert first["exception"] == "ValueError"
    assert first["error"] == "boom 3: é"
    assert first["backtrace"] == backtrace
    assert first["backtrace"][0].endswith("in `_perform'")  # innermost frame first, Ruby-style
    assert first["payload"] == {"class": "Archive", "args": [3, "tar"]}
    assert first["worker"].split(":")[1] == str(os.getpid())
    assert second["payload"] is None
    assert second["exception"] == "Resque::Helpers::DecodeException"
    for line in lines:
        assert line["failed_at_epoch"] == now  # DateTime.parse reads the zone Python wrote
        assert line["retried_at_epoch"] is None
        assert line["roundtrip"] is True  # Ruby re-encodes the entry to the same bytes
    if tz == "Europe/Berlin":
        assert wire.loads(entries[0])["failed_at"].endswith(("CET", "CEST"))


def test_python_requeue_passes_ruby_check(
    ruby: str, redis_url: str, r: redis.Redis, client: Client, tz: str
) -> None:
    python_failures(r, int(time.time()))
    retried_at = client.requeue(0)
    lines = json_lines(run_ruby(ruby, redis_url, "check-failures"))
    assert lines[0]["retried_at"] == retried_at
    assert isinstance(lines[0]["retried_at_epoch"], int)
    assert list(wire.loads(r.lindex(KEYS.failed, 0) or b""))[-1] == "retried_at"
    assert r.lrange(KEYS.queue("high"), 0, -1) == [wire.encode_job("Archive", [3, "tar"]).encode()]


def test_ruby_requeue_read_by_python(
    ruby: str, redis_url: str, r: redis.Redis, client: Client, tz: str
) -> None:
    python_failures(r, int(time.time()))
    (result,) = json_lines(run_ruby(ruby, redis_url, "requeue", "0"))
    assert result["queue"] == "high"
    (entry,) = client.failed(0, 1)
    assert entry is not None
    assert list(entry) == [*FAILURE_KEYS, "retried_at"]
    assert entry["retried_at"] == result["retried_at"]
    assert wire.parse_time(entry["retried_at"]) is not None
    assert client.peek("high", 0, 5) == [{"class": "Archive", "args": [3, "tar"]}]
    assert r.smembers(KEYS.queues) == {b"high"}
    # Requeueing the undecodable entry fails in Ruby too, but only after stamping it.
    run_ruby(ruby, redis_url, "requeue", "1", expect=1)
    run_ruby(ruby, redis_url, "check-failures")


# -- workers, heartbeats, stats --------------------------------------------------------------


def register_python_worker(
    r: redis.Redis, worker_id: str, now: int, server_now: int, job: Optional[tuple[str, str]] = None
) -> None:
    """What the Python worker writes at registration (and, with ``job``, while working)."""
    pipe = r.pipeline(transaction=False)
    pipe.hset(KEYS.heartbeats, worker_id, wire.heartbeat_value(server_now))
    pipe.sadd(KEYS.workers, worker_id)
    pipe.set(KEYS.worker_started(worker_id), wire.started_at(now))
    if job is not None:
        queue, raw_payload = job
        pipe.set(KEYS.worker(worker_id), wire.worker_value(queue, wire.run_at(now), raw_payload))
    pipe.execute()


def test_python_workers_pass_ruby_check(
    ruby: str, redis_url: str, r: redis.Redis, client: Client, tz: str
) -> None:
    host, pid = socket.gethostname(), os.getpid()
    idle = str(wire.WorkerId.build(host, pid, ["high", "low"]))
    busy = str(wire.WorkerId.build(host, pid, ["high", "low"], slot=1))
    client.enqueue_to("high", "Archive", 35, "tar", {"é": 1.0e20})
    [raw_payload] = r.lrange(KEYS.queue("high"), 0, -1)  # the item as stored
    payload = raw_payload.decode("utf-8")
    now, server_now = int(time.time()), int(r.time()[0])
    register_python_worker(r, idle, now, server_now)
    register_python_worker(r, busy, now, server_now, job=("high", payload))

    lines = json_lines(run_ruby(ruby, redis_url, "check-workers"))
    assert [line["id"] for line in lines] == sorted([idle, busy])
    by_id = {line["id"]: line for line in lines}
    for worker_id in (idle, busy):
        line = by_id[worker_id]
        assert (line["host"], line["pid"], line["queues"]) == (host, pid, ["high", "low"])
        assert line["started_epoch"] == now
        assert line["heartbeat_epoch"] == server_now
    assert by_id[idle]["state"] == "idle"
    assert by_id[idle]["job"] is None
    assert by_id[busy]["state"] == "working"
    assert by_id[busy]["job"]["queue"] == "high"
    assert by_id[busy]["run_at_epoch"] == now
    assert by_id[busy]["payload_json"] == payload  # Resque.encode(job['payload']) is byte-exact
    if tz == "Europe/Berlin":
        assert by_id[idle]["started"].endswith(("+0100", "+0200"))
        assert by_id[idle]["heartbeat"].endswith(("+01:00", "+02:00"))

    (stats,) = json_lines(run_ruby(ruby, redis_url, "stats"))
    assert stats["workers"] == 2
    assert stats["working"] == 1
    assert stats["pending"] == 1
    assert json_lines(run_ruby(ruby, redis_url, "prune-check", "300")) == [[]]


def test_prune_check_sees_only_expired_heartbeats(
    ruby: str, redis_url: str, r: redis.Redis, tz: str
) -> None:
    server_now = int(r.time()[0])
    alive = str(wire.WorkerId.build("web1", 100, ["high"]))
    dead = str(wire.WorkerId.build("web2", 200, ["high"]))
    unregistered = str(wire.WorkerId.build("web3", 300, ["*"]))
    register_python_worker(r, alive, server_now, server_now - 200)
    register_python_worker(r, dead, server_now, server_now - 301)
    r.hset(KEYS.heartbeats, unregistered, wire.heartbeat_value(server_now - 3600))
    (expired,) = json_lines(run_ruby(ruby, redis_url, "prune-check", "300"))
    assert sorted(expired) == sorted([dead, unregistered])


def test_ruby_stats_agree_with_python_info(
    ruby: str, redis_url: str, r: redis.Redis, client: Client
) -> None:
    client.enqueue_to("high", "A", 1)
    client.enqueue_to("high", "A", 2)
    client.enqueue_to("low", "B")
    python_failures(r, int(time.time()))
    r.set(KEYS.stat("processed"), 7)
    r.set(KEYS.stat("failed"), 2)
    now = int(r.time()[0])
    register_python_worker(r, "web1:1:high", now, now, job=("high", wire.encode_job("A", [0])))
    (stats,) = json_lines(run_ruby(ruby, redis_url, "stats"))
    info = client.info()
    for name in ("pending", "processed", "queues", "workers", "working", "failed"):
        assert stats[name] == info[name], name
    assert (stats["pending"], stats["failed"], stats["stat_failed"]) == (3, 2, 2)


# -- the Ruby checks reject what breaks Ruby ---------------------------------------------------

GOOD_FAILURE = {
    "failed_at": "2024/01/15 09:50:00 UTC",
    "payload": {"class": "A", "args": []},
    "exception": "RuntimeError",
    "error": "boom",
    "backtrace": ["a.rb:1:in `x'"],
    "worker": "web1:1:high",
    "queue": "high",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"worker": None}, "worker"),
        ({"queue": None}, "queue"),
        ({"failed_at": ""}, "failed_at"),
        ({"failed_at": "2024/01/15 09:50:00"}, "failed_at"),  # no zone: pre-3.0 format
        ({"failed_at": "2024/99/15 09:50:00 UTC"}, "invalid date"),
        ({"backtrace": "a.rb:1"}, "backtrace"),
        ({"retried_at": "later"}, "retried_at"),
        ({"payload": {"args": []}}, "class"),
    ],
)
def test_check_failures_rejects(
    ruby: str, redis_url: str, r: redis.Redis, change: dict[str, Any], message: str
) -> None:
    r.rpush(KEYS.failed, wire.dumps(GOOD_FAILURE), wire.dumps({**GOOD_FAILURE, **change}))
    proc = run_ruby(ruby, redis_url, "check-failures", expect=1)
    assert "#1 " in proc.stderr and "#0 " not in proc.stderr
    assert message in proc.stderr


def test_check_failures_rejects_key_order(ruby: str, redis_url: str, r: redis.Redis) -> None:
    reordered = {"payload": GOOD_FAILURE["payload"], **GOOD_FAILURE}
    r.rpush(KEYS.failed, wire.dumps(reordered))
    assert "keys" in run_ruby(ruby, redis_url, "check-failures", expect=1).stderr


@pytest.mark.parametrize(
    ("worker_id", "started", "heartbeat", "job", "message"),
    [
        ("web1:1:high", "2024-01-15 09:50:00 +0000", "", None, "heartbeat"),
        ("web1:1:high", "2024-01-15 09:50:00 +0000", "2024-01-15T09:50:00Z", None, "heartbeat"),
        ("web1:1:high", None, "2024-01-15T09:50:00+00:00", None, "started"),
        ("web1:1:high", "1705312200", "2024-01-15T09:50:00+00:00", None, "started"),
        ("web1:1:", "2024-01-15 09:50:00 +0000", "2024-01-15T09:50:00+00:00", None, "host:pid"),
        ("web1:x:high", "2024-01-15 09:50:00 +0000", "2024-01-15T09:50:00+00:00", None, "pid"),
        (
            "web1:1:high",
            "2024-01-15 09:50:00 +0000",
            "2024-01-15T09:50:00+00:00",
            '{"run_at":"2024-01-15T09:50:00Z","queue":"high","payload":{"class":"A","args":[]}}',
            "worker key",
        ),
        (
            "web1:1:high",
            "2024-01-15 09:50:00 +0000",
            "2024-01-15T09:50:00+00:00",
            '{"queue":"high","run_at":"1705312200","payload":{"class":"A","args":[]}}',
            "run_at",
        ),
    ],
)
def test_check_workers_rejects(
    ruby: str,
    redis_url: str,
    r: redis.Redis,
    worker_id: str,
    started: Optional[str],
    heartbeat: str,
    job: Optional[str],
    message: str,
) -> None:
    r.sadd(KEYS.workers, worker_id)
    r.hset(KEYS.heartbeats, worker_id, heartbeat)
    if started is not None:
        r.set(KEYS.worker_started(worker_id), started)
    if job is not None:
        r.set(KEYS.worker(worker_id), job)
    assert message in run_ruby(ruby, redis_url, "check-workers", expect=1).stderr


@pytest.mark.parametrize("heartbeat", ["", "garbage", "not a time"])
def test_prune_check_fails_where_ruby_startup_would(
    ruby: str, redis_url: str, r: redis.Redis, heartbeat: str
) -> None:
    r.hset(KEYS.heartbeats, "web1:1:high", heartbeat)
    proc = run_ruby(ruby, redis_url, "prune-check", "300", expect=1)
    assert "web1:1:high" in proc.stderr


# -- ActiveJob ---------------------------------------------------------------------------------


def queue_item(r: redis.Redis, queue: str, index: int = 0) -> bytes:
    raw = r.lindex(KEYS.queue(queue), index)
    assert isinstance(raw, bytes), f"no item {index} in queue:{queue}"
    return raw


def decode_active_job(r: redis.Redis, queue: str) -> Any:
    """Python's decoding of the first item of ``queue``, as the worker would do it."""
    from pyresqueworker.jobs.activejob import decode_active_job as decode

    raw = queue_item(r, queue)
    return decode(Job(queue=queue, raw=raw, payload=wire.loads(raw)))


def test_ruby_serializer_reproduces_golden_arguments(
    ruby: str, redis_url: str, r: redis.Redis
) -> None:
    """The script's ActiveJob serializer gives the arguments Rails wrote in the golden file."""
    code = (
        'ResqueCompat::Client.new.enqueue_active_job("default", "HelloJob", '
        '["world", 42, {"plain" => 1, sym: :x}], '
        '{greeting: "hi", at: Time.utc(2024, 1, 15, 9, 50, 0)})'
    )
    run_ruby(ruby, redis_url, ruby_code=code)
    (data,) = wire.loads(queue_item(r, "default"))["args"]
    (golden,) = GOLDEN_ACTIVE_JOB["args"]
    assert wire.dumps(data["arguments"]) == wire.dumps(golden["arguments"])
    # Rails 7.1+ shape: the 6.1 keys in the same order, then scheduled_at.
    assert list(data) == [*golden, "scheduled_at"]
    assert data["enqueued_at"].endswith("Z") and len(data["enqueued_at"]) == 30


def test_ruby_values_decoded_by_python(ruby: str, redis_url: str, r: redis.Redis) -> None:
    """Symbols, symbol keys, Time and Date as the Ruby serializer writes them."""
    code = (
        'ResqueCompat::Client.new.enqueue_active_job("default", "HelloJob", '
        '[:x, {"plain" => 1, sym: :y}, Date.new(2024, 2, 29)], '
        "{at: Time.utc(2024, 1, 15, 9, 50, 0, 123456)})"
    )
    run_ruby(ruby, redis_url, ruby_code=code)
    call = decode_active_job(r, "default")
    assert call.args == ["x", {"plain": 1, "sym": "y"}, date(2024, 2, 29)]
    assert call.kwargs == {"at": datetime(2024, 1, 15, 9, 50, 0, 123456, tzinfo=timezone.utc)}


def test_ruby_active_job_decoded_by_python(ruby: str, redis_url: str, r: redis.Redis) -> None:
    args = ["world", 42, {"plain": 1, "nested": {"deep": [1, None]}}, [1, "two"]]
    kwargs = {"greeting": "hi", "count": 2}
    run_ruby(
        ruby, redis_url, "active-job", "mailers", "HelloJob", json.dumps(args), json.dumps(kwargs)
    )
    call = decode_active_job(r, "mailers")
    assert call.class_name == "HelloJob"
    assert call.args == args
    assert call.kwargs == kwargs


def test_ruby_active_job_without_kwargs_decoded_by_python(
    ruby: str, redis_url: str, r: redis.Redis
) -> None:
    run_ruby(ruby, redis_url, "active-job", "default", "Jobs::Cleanup", '[{"a": 1}]')
    call = decode_active_job(r, "default")
    assert (call.class_name, call.args, call.kwargs) == ("Jobs::Cleanup", [{"a": 1}], {})


def test_python_active_job_passes_ruby_check(
    ruby: str, redis_url: str, r: redis.Redis, client: Client
) -> None:
    job_id = client.enqueue_active_job(
        "HelloJob", "world", 42, {"plain": 1}, queue="mailers", greeting="hi"
    )
    (line,) = json_lines(run_ruby(ruby, redis_url, "check-active-job", "mailers"))
    data = line["job_data"]
    assert line["roundtrip"] is True
    assert data["job_id"] == job_id
    assert (data["job_class"], data["queue_name"]) == ("HelloJob", "mailers")
    assert data["arguments"] == [
        "world",
        42,
        {"plain": 1, "_aj_symbol_keys": []},
        {"greeting": "hi", "_aj_ruby2_keywords": ["greeting"]},
    ]
    # Same job_data keys, in the same order, as the Ruby adapter writes.
    run_ruby(ruby, redis_url, "active-job", "ruby", "HelloJob", "[]")
    (ruby_item,) = client.peek("ruby", 0, 1)
    assert list(data) == list(ruby_item["args"][0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"executions": 1}, "executions"),
        ({"exception_executions": None}, "exception_executions"),
        ({"enqueued_at": "yesterday"}, "enqueued_at"),
        ({"queue_name": "other"}, "queue_name"),
        ({"arguments": [{"a": 1}]}, "_aj_symbol_keys"),
        ({"arguments": [{"a": 1, "_aj_ruby2_keywords": ["a"]}, 2]}, "last argument"),
        ({"arguments": [{"_aj_serialized": "Nope", "value": 1}]}, "unknown serializer"),
    ],
)
def test_check_active_job_rejects(
    ruby: str, redis_url: str, r: redis.Redis, change: dict[str, Any], message: str
) -> None:
    run_ruby(ruby, redis_url, "active-job", "default", "HelloJob", "[]")
    item = wire.loads(queue_item(r, "default"))
    item["args"][0].update(change)
    r.lset(KEYS.queue("default"), 0, wire.dumps(item))
    assert message in run_ruby(ruby, redis_url, "check-active-job", "default", expect=1).stderr
