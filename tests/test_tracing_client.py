"""The client's side of tracing: inside a span, what it enqueues carries the span's W3C
context as the Ruby gem's ``Resque.push`` writes it (a ``<queue> send`` producer span, the
``traceparent`` key after ``class`` and ``args``); without one, the bytes are
``Resque.enqueue_to``'s. A Python-enqueued job continues in a Python worker, and its item is
what a Ruby worker with the gem would continue (checked with the tests' Ruby).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
import redis
import redis.asyncio
from conftest import RUBY_CLIENT
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)
from tracing_helpers import (  # noqa: F401 (sdk_spans: the fixture the tests use)
    MEMORY,
    hex_id,
    sdk_spans,
    spans_named,
    work_until_empty,
)

from pyresqueworker import AsyncClient, Client
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol import wire

ATTRIBUTES = {"messaging.system": "resque", "messaging.destination": "q",
              "messaging.destination_kind": "queue"}
FIXED_JOB_ID = "b6d2cbb8-5b9a-4e0c-9d6e-3f1a2b3c4d5e"


pytestmark = pytest.mark.usefixtures("sdk_spans")


def request_span() -> trace.Span:
    """Stands for the web request that enqueues."""
    return trace.get_tracer("app").start_span("request")


def traceparent_of(span: ReadableSpan, flags: str) -> str:
    return f"00-{hex_id(span.context.trace_id, 32)}-{hex_id(span.context.span_id, 16)}-{flags}"


def check_item(item: str, untraced: str, queue: str = "q", job_class: str = "X") -> None:
    """``item`` is ``untraced`` with the traceparent of the (only) producer span appended,
    as the gem writes it; that span is a child of the request span."""
    [send] = spans_named(f"{queue} send")
    assert send.kind is SpanKind.PRODUCER
    assert dict(send.attributes or {}) == {**ATTRIBUTES, "messaging.destination": queue,
                                           "messaging.resque.job_class": job_class}
    assert send.parent is not None
    flags = wire.loads(item)["traceparent"][-2:]
    assert int(flags, 16) & 1  # sampled
    assert item == untraced[:-1] + f',"traceparent":"{traceparent_of(send, flags)}"}}'
    MEMORY.clear()


def last_item(r: redis.Redis, queue: str) -> str:
    """The item last pushed on ``queue``, as stored."""
    raw = r.lindex(f"resque:queue:{queue}", -1)
    assert isinstance(raw, bytes)
    return raw.decode()


def test_without_a_span_the_bytes_are_resque_enqueue_tos(r: redis.Redis) -> None:
    client = Client(r)
    client.enqueue_to("q", "X", 1, "a")
    assert r.lindex("resque:queue:q", -1) == wire.encode_job("X", [1, "a"]).encode()
    client.enqueue_many("q", [("X", [1]), ("Y", [])])
    client.enqueue_in(3600, "X", 2, queue="q")
    assert r.lrange("resque:queue:q", 0, -1) == [
        b'{"class":"X","args":[1,"a"]}', b'{"class":"X","args":[1]}', b'{"class":"Y","args":[]}']
    assert MEMORY.get_finished_spans() == ()


def test_inside_a_span_each_enqueue_carries_its_producer_spans_context(r: redis.Redis) -> None:
    client = Client(r)
    client.clock = lambda: 1700000000.0
    client.enqueue_active_job("Rails::MarkJob", 1, queue="aj", job_id=FIXED_JOB_ID)
    [untraced_aj] = [raw.decode() for raw in r.lrange("resque:queue:aj", 0, -1)]
    request = request_span()
    with trace.use_span(request, end_on_exit=True):
        client.enqueue_to("q", "X", 1, "a")
        check_item(last_item(r, "q"), wire.encode_job("X", [1, "a"]))
        client.enqueue("X", 2, queue="q")
        check_item(last_item(r, "q"), wire.encode_job("X", [2]))
        client.enqueue_at(1, "X", 3, queue="q")  # due already: pushed now, so traced
        check_item(last_item(r, "q"), wire.encode_job("X", [3]))
        client.enqueue_active_job("Rails::MarkJob", 1, queue="aj", job_id=FIXED_JOB_ID)
        check_item(last_item(r, "aj"), untraced_aj, queue="aj", job_class="Rails::MarkJob")
        assert client.enqueue_many("many", [("X", [1]), ("Y", [2])], batch=1) == 2
        [send] = spans_named("many send")  # one span for the call, its context in each job
        parents = {wire.loads(raw)["traceparent"] for raw in r.lrange("resque:queue:many", 0, -1)}
        [parent] = parents
        assert parent == traceparent_of(send, parent[-2:])
        client.enqueue_in(3600, "X", 4, queue="q")  # delayed: resque-scheduler matches bytes
        assert wire.encode_delayed_item("X", [4], "q").encode() in r.lrange(
            f"resque:delayed:{int(client.clock()) + 3600}", 0, -1)
    assert all(span.parent is not None and span.parent.span_id == request.get_span_context()
               .span_id for span in spans_named("q send"))


def test_tracestate_travels_too(r: redis.Redis) -> None:
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True,
                         trace_flags=TraceFlags(1), trace_state=TraceState([("rojo", "x1")]))
    with trace.use_span(NonRecordingSpan(remote)):
        Client(r).enqueue_to("q", "X")
    decoded = wire.loads(last_item(r, "q"))
    assert list(decoded) == ["class", "args", "traceparent", "tracestate"]
    assert decoded["tracestate"] == "rojo=x1"
    assert decoded["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_the_async_client_writes_the_same(redis_url: str, r: redis.Redis) -> None:
    async def enqueue() -> None:
        client = AsyncClient(redis.asyncio.Redis.from_url(redis_url))
        try:
            with trace.use_span(request_span(), end_on_exit=True):
                await client.enqueue_to("q", "X", 1)
            await client.enqueue_to("q", "X", 1)
        finally:
            await client.close()

    asyncio.run(enqueue())
    inside, outside = [raw.decode() for raw in r.lrange("resque:queue:q", 0, -1)]
    assert outside == wire.encode_job("X", [1])
    check_item(inside, outside)


def test_a_failed_write_marks_the_producer_span_and_leaves_the_context_as_it_was() -> None:
    client = Client(redis.Redis(port=1, socket_connect_timeout=1))  # nothing listens there
    request = request_span()
    with trace.use_span(request, end_on_exit=True):
        with pytest.raises(redis.exceptions.ConnectionError):
            client.enqueue_to("q", "X", 1)
        assert trace.get_current_span() is request
    [send] = spans_named("q send")
    assert send.status.status_code is StatusCode.ERROR
    assert [event.name for event in send.events] == ["exception"]


def test_a_python_enqueued_job_continues_in_a_python_worker(redis_url: str,
                                                            r: redis.Redis) -> None:
    registry = Registry()
    registry.register("X", lambda value: r.sadd("done", value))
    with trace.use_span(request_span(), end_on_exit=True):
        Client(r).enqueue_to("q", "X", "hello")
    work_until_empty(redis_url, registry)
    assert r.smembers("done") == {b"hello"}
    [send], [process] = spans_named("q send"), spans_named("q process")
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.context.trace_id == send.context.trace_id


RUBY_READS = """
raw = Redis.new(url: ENV.fetch("REDIS_URL")).lindex("resque:queue:" + ARGV[0], -1)
item = Oj.load(raw, mode: :compat)  # Resque.decode under MultiJson on Oj
found = item["traceparent"].to_s.match(/\\A(\\h{2})-(\\h{32})-(\\h{16})-(\\h{2})(-.*)?\\z/)
puts Oj.dump({"class" => item["class"], "args" => item["args"],
              "trace_id" => found && found[2], "span_id" => found && found[3],
              "sampled" => found && (found[4].to_i(16) & 1) == 1}, mode: :compat)
"""


def test_a_ruby_worker_reads_the_context_the_gem_would_continue(
    ruby: str, redis_url: str, r: redis.Redis,
) -> None:
    client = Client(r, namespace="resque")
    with trace.use_span(request_span(), end_on_exit=True):
        client.enqueue_to("q", "X", 1, {"k": "v"})
        client.enqueue_active_job("HelloJob", "world", queue="mailers")
    env = {**os.environ, "REDIS_URL": redis_url, "RESQUE_NAMESPACE": "resque"}
    proc = subprocess.run([ruby, "-r", "redis", "-r", "oj", "-e", RUBY_READS, "q"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(proc.stdout)
    [send] = spans_named("q send")
    assert seen == {"class": "X", "args": [1, {"k": "v"}], "sampled": True,
                    "trace_id": hex_id(send.context.trace_id, 32),
                    "span_id": hex_id(send.context.span_id, 16)}
    # Ruby's ActiveJob adapter takes the traced item, and re-encodes it to the same bytes.
    check = subprocess.run([ruby, str(RUBY_CLIENT / "resque_compat.rb"), "check-active-job",
                            "mailers"], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout.splitlines()[0])["roundtrip"] is True
