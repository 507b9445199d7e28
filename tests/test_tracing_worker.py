"""The worker's OpenTelemetry spans: a Rails-side ``traceparent`` (the gem's payload shape)
becomes the parent of the Python job's consumer span, with the gem's names and attributes,
in thread slots, asyncio slots and ``--fork-per-job`` children; failures are recorded; the
worker's own Redis calls stay untraced unless asked.

In-process workers (``--interval 0``: they stop when the queue is empty) with the SDK's
in-memory exporter; a forked child's spans come back through a file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.trace import SpanKind, StatusCode
from tracing_helpers import (  # noqa: F401 (sdk_spans: a fixture)
    FILES,
    MEMORY,
    RAILS_SPAN_ID,
    RAILS_TRACE_ID,
    gem_payload,
    hex_id,
    sdk_spans,
    spans_named,
    work_until_empty,
)
from worker_helpers import wait_ran

from pyresqueworker import Client
from pyresqueworker.jobs.activejob import JOB_WRAPPER, job_data
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.jobs.tracing import NULL_SPAN, JobTracing, job_class_of
from pyresqueworker.protocol import wire
from pyresqueworker.protocol.job import Job

Q = wire.Keys("resque:").queue("q")
ATTRIBUTES = {"messaging.system": "resque", "messaging.destination": "q",
              "messaging.destination_kind": "queue"}


pytestmark = pytest.mark.usefixtures("sdk_spans")


def inner_tracer() -> trace.Tracer:
    return trace.get_tracer("handler")


def registry_with_marker(r: redis.Redis) -> Registry:
    registry = Registry()

    @registry.job("Mark")
    def mark(value: str) -> None:
        with inner_tracer().start_as_current_span("handler work"):
            r.sadd("done", value)

    @registry.job("Boom")
    def boom() -> None:
        raise ValueError("a little trouble")

    return registry


def test_a_rails_traceparent_is_the_parent_of_the_job_span(redis_url: str,
                                                           r: redis.Redis) -> None:
    r.rpush(Q, gem_payload("Mark", ["a"], tracestate="rojo=00f067aa0ba902b7"))
    work_until_empty(redis_url, registry_with_marker(r))
    assert r.smembers("done") == {b"a"}
    [job] = spans_named("q process")
    assert job.kind is SpanKind.CONSUMER
    assert dict(job.attributes or {}) == {**ATTRIBUTES, "messaging.resque.job_class": "Mark"}
    assert hex_id(job.context.trace_id, 32) == RAILS_TRACE_ID
    assert job.parent is not None and job.parent.is_remote
    assert hex_id(job.parent.span_id, 16) == RAILS_SPAN_ID
    assert job.context.trace_state.get("rojo") == "00f067aa0ba902b7"
    assert job.status.status_code is StatusCode.UNSET
    [work] = spans_named("handler work")  # the handler's own spans hang under the job's
    assert work.parent is not None and work.parent.span_id == job.context.span_id


def test_link_mode_starts_a_new_trace_linked_to_the_rails_span(redis_url: str,
                                                                r: redis.Redis) -> None:
    r.rpush(Q, gem_payload("Mark", ["a"]))
    work_until_empty(redis_url, registry_with_marker(r), tracing="link")
    [job] = spans_named("q process")
    assert job.parent is None
    assert hex_id(job.context.trace_id, 32) != RAILS_TRACE_ID
    [link] = job.links
    assert hex_id(link.context.trace_id, 32) == RAILS_TRACE_ID
    assert hex_id(link.context.span_id, 16) == RAILS_SPAN_ID


def test_a_job_without_a_traceparent_gets_a_root_span(redis_url: str, r: redis.Redis) -> None:
    Client(r).enqueue_to("q", "Mark", "plain")
    work_until_empty(redis_url, registry_with_marker(r), tracing="link")
    [job] = spans_named("q process")
    assert job.parent is None and not job.links


def test_a_failing_job_records_its_exception_and_marks_the_span(redis_url: str,
                                                                 r: redis.Redis) -> None:
    r.rpush(Q, gem_payload("Boom", []))
    work_until_empty(redis_url, registry_with_marker(r))
    [job] = spans_named("q process")
    assert job.status.status_code is StatusCode.ERROR
    assert job.status.description == "Unhandled exception of type: ValueError"
    [event] = job.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "a little trouble"
    assert "in boom" in str(attributes["exception.stacktrace"])
    failure = wire.loads(r.lindex("resque:failed", 0) or b"")
    assert failure["exception"] == "ValueError"  # the failure entry is Resque's as ever
    assert failure["payload"]["traceparent"].endswith(f"{RAILS_SPAN_ID}-01")


def test_an_active_job_payload_names_the_job_class_and_still_decodes(
    redis_url: str, r: redis.Redis,
) -> None:
    registry = registry_with_marker(r)
    registry.register("Rails::MarkJob", lambda value: r.sadd("done", value))
    data = job_data("Rails::MarkJob", ["via rails"], queue_name="q", job_id="j-1",
                    priority=None, locale="en", timezone="UTC", enqueued_at=0.0)
    r.rpush(Q, gem_payload(JOB_WRAPPER, [data]))
    work_until_empty(redis_url, registry)
    assert r.smembers("done") == {b"via rails"}
    [job] = spans_named("q process")
    assert (job.attributes or {})["messaging.resque.job_class"] == "Rails::MarkJob"
    assert hex_id(job.context.trace_id, 32) == RAILS_TRACE_ID


def test_a_wrapper_that_names_no_job_class_is_named_by_the_wrapper() -> None:
    assert job_class_of(JOB_WRAPPER, [{"arguments": []}]) == JOB_WRAPPER
    assert job_class_of(JOB_WRAPPER, [{"job_class": 7}]) == JOB_WRAPPER
    assert job_class_of(JOB_WRAPPER, ["not a hash"]) == JOB_WRAPPER
    assert job_class_of(None, []) == ""


def test_async_handlers_and_sync_ones_in_asyncio_mode_run_inside_the_job_span(
    redis_url: str, r: redis.Redis,
) -> None:
    registry = Registry()

    @registry.job("AsyncMark")
    async def async_mark(value: str) -> None:
        with inner_tracer().start_as_current_span("async work"):
            r.sadd("done", value)

    @registry.job("SyncMark")
    def sync_mark(value: str) -> None:
        with inner_tracer().start_as_current_span("sync work"):
            r.sadd("done", value)

    r.rpush(Q, gem_payload("AsyncMark", ["a"]), gem_payload("SyncMark", ["s"]))
    work_until_empty(redis_url, registry, execution="asyncio", concurrency=2)
    assert r.smembers("done") == {b"a", b"s"}
    jobs = {(span.attributes or {})["messaging.resque.job_class"]: span
            for span in spans_named("q process")}
    assert set(jobs) == {"AsyncMark", "SyncMark"}
    for name, job_class in (("async work", "AsyncMark"), ("sync work", "SyncMark")):
        [work] = spans_named(name)
        assert work.parent is not None
        assert work.parent.span_id == jobs[job_class].context.span_id
        assert hex_id(work.context.trace_id, 32) == RAILS_TRACE_ID


def test_fork_per_job_children_trace_under_the_parents_span(
    redis_url: str, r: redis.Redis, tmp_path: Path,
) -> None:
    FILES.path = tmp_path / "spans.jsonl"
    r.rpush(Q, gem_payload("Mark", ["forked"]), gem_payload("Boom", []))
    work_until_empty(redis_url, registry_with_marker(r), fork_per_job=True)
    assert r.smembers("done") == {b"forked"}
    mark, boom = sorted(spans_named("q process"),
                        key=lambda span: (span.attributes or {})["messaging.resque.job_class"]
                        != "Mark")
    # The handler's span was made (and flushed) by the child: it reached the file only.
    [work] = [span for span in FILES.read() if span["name"] == "handler work"]
    assert work["parent_id"] == "0x" + hex_id(mark.context.span_id, 16)
    assert work["context"]["trace_id"] == "0x" + RAILS_TRACE_ID
    assert not spans_named("handler work")
    # The child's exception reaches the span through the failure entry.
    assert boom.status.status_code is StatusCode.ERROR
    [event] = boom.events
    assert dict(event.attributes or {})["exception.type"] == "ValueError"
    assert dict(event.attributes or {})["exception.message"] == "a little trouble"


def test_the_workers_own_redis_calls_are_not_traced_unless_asked(
    redis_url: str, r: redis.Redis,
) -> None:
    instrumentor = RedisInstrumentor()
    instrumentor.instrument()
    try:
        r.rpush(Q, gem_payload("Mark", ["a"]), gem_payload("Mark", ["b"]))
        work_until_empty(redis_url, registry_with_marker(r))
        jobs = spans_named("q process")
        assert len(jobs) == 2
        job_ids = {job.context.span_id for job in jobs}
        # The handler's SADD is traced, under its job; of the worker's own calls only the
        # connection check made before it runs (PING, INFO), none per job (claims, heartbeats).
        redis_spans = [span for span in MEMORY.get_finished_spans()
                       if (span.attributes or {}).get("db.system") == "redis"]
        work_ids = {span.context.span_id for span in spans_named("handler work")}
        under_jobs = [span for span in redis_spans
                      if span.parent is not None and span.parent.span_id in work_ids]
        assert [span.name for span in under_jobs] == ["SADD", "SADD"]
        assert {span.name for span in redis_spans if span not in under_jobs} <= {
            "RPUSH", "PING", "INFO"}  # this test's own RPUSH, and the start-up check
        assert all(span.parent is not None and span.parent.span_id in job_ids
                   for span in spans_named("handler work"))
        MEMORY.clear()
        r.rpush(Q, gem_payload("Mark", ["c"]))
        work_until_empty(redis_url, registry_with_marker(r), trace_worker_redis=True)
        names = {span.name for span in MEMORY.get_finished_spans()}
        assert "EVALSHA" in names  # the claims, now that they were asked for
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize("traceparent", [
    "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", 12345, None, ["00-a-b-01"],
])
def test_a_bad_traceparent_leaves_a_root_span_and_a_job_that_runs(
    redis_url: str, r: redis.Redis, traceparent: object,
) -> None:
    r.rpush(Q, wire.dumps({"class": "Mark", "args": ["x"], "traceparent": traceparent}))
    work_until_empty(redis_url, registry_with_marker(r))
    assert r.smembers("done") == {b"x"}
    [job] = spans_named("q process")
    assert job.parent is None


def test_tracing_off_makes_no_span(redis_url: str, r: redis.Redis) -> None:
    r.rpush(Q, gem_payload("Mark", ["a"]))
    work_until_empty(redis_url, registry_with_marker(r), tracing="off")
    assert r.smembers("done") == {b"a"}
    assert spans_named("q process") == []
    assert JobTracing("off").start(Job("q", b"{}", {})) is NULL_SPAN
    with pytest.raises(ValueError, match="tracing"):
        JobTracing("sometimes")


def test_without_a_provider_a_traced_payload_runs_and_nothing_is_traced(
    spawn_worker: object, r: redis.Redis,
) -> None:
    """A real ``pyresque-work`` with opentelemetry installed but no provider configured."""
    r.rpush(Q, gem_payload("Record", ["from rails"]))
    spawn_worker("--queues", "q", "--tracing", "child")  # type: ignore[operator]
    [record] = wait_ran(r, 1)
    assert record["args"] == ["from rails"]
    assert r.llen("resque:failed") == 0


_PROVIDER_LATE = """
import time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from pyresqueworker.jobs.tracing import NULL_SPAN, PROVIDER_LOOK_S, JobTracing
from pyresqueworker.protocol.job import Job

job = Job("q", b"{}", {"class": "Mark", "args": []})
tracing = JobTracing("child")
assert tracing.start(job) is NULL_SPAN  # no provider yet
trace.set_tracer_provider(TracerProvider())
assert tracing.start(job) is NULL_SPAN  # looked for less than PROVIDER_LOOK_S ago
time.sleep(PROVIDER_LOOK_S + 0.1)
assert tracing.start(job) is not NULL_SPAN
assert JobTracing("child").start(job) is not NULL_SPAN  # a worker started now: at once
print("ok")
"""


def test_a_provider_set_while_a_worker_runs_is_used_within_a_second() -> None:
    """Without a provider a worker looks for one at most once a second (the look reads the
    environment); a fresh process, as OpenTelemetry sets its provider once."""
    done = subprocess.run([sys.executable, "-c", _PROVIDER_LATE], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
