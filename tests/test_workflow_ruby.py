"""Results, dependencies and batches across Python and Ruby: PyResque::Tracking on a real Redis.

The Ruby side is tests/ruby/tracking_worker.rb: Resque 3.0's ``Resque::Job`` (hooks, perform,
fail; tests/ruby/lib/resque/job.rb) run by a small LPOP loop, on job classes that extend
``PyResque::Tracking`` (examples/ruby_client/pyresque_tracking.rb). Python enqueues (and runs
its own share of a batch in a real ``pyresque-work``), and reads what the Ruby jobs recorded
through the client's public API: ``ref.result()``, ``ref.status()``, ``batch_status()``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import redis
from conftest import GOLDEN, ROOT, RUBY_CLIENT
from worker_helpers import wait_until

from pyresqueworker import Client, JobFailed
from pyresqueworker.protocol import workflow

pytestmark = pytest.mark.ruby

WORKER = ROOT / "tests" / "ruby" / "tracking_worker.rb"
FAKE_RESQUE_JOB = ROOT / "tests" / "ruby" / "lib" / "resque" / "job.rb"
TRACKING = RUBY_CLIENT / "pyresque_tracking.rb"
SCRIPT = RUBY_CLIENT / "pyresque_workflow.lua"
FAILED_AT_RE = re.compile(r"\A\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \S+\Z")
RECORD_FAILURE_KEYS = {"failed_at", "exception", "error", "backtrace", "worker", "queue"}

with open(GOLDEN / "enqueue-oj.json", encoding="utf-8") as _handle:
    GOLDEN_ENQUEUE: dict[str, dict[str, str]] = json.load(_handle)


class RubyWorker:
    """One tracking_worker.rb process; ``id`` is its Resque worker id."""

    def __init__(self, ruby: str, redis_url: str, queues: str,
                 env: Optional[dict[str, str]] = None) -> None:
        full_env = {**os.environ, "REDIS_URL": redis_url, **(env or {})}
        self.proc = subprocess.Popen(
            [ruby, str(WORKER), queues], env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self.id = self._ready()

    def _ready(self) -> str:
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not selector.select(timeout=30):
                self.stop()
                pytest.fail("the Ruby worker did not start within 30 s")
        finally:
            selector.close()
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            pytest.fail(f"the Ruby worker did not start: {line!r}\n{self.stop()}")
        return line.split(" ", 1)[1].strip()

    def stop(self) -> str:
        """Stop it (TERM, then KILL); returns what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return err

    def alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"the Ruby worker died ({self.proc.returncode}):\n{self.stop()}")


@pytest.fixture
def ruby_worker(ruby: str, redis_url: str) -> Iterator[Callable[..., RubyWorker]]:
    """Start tracking_worker.rb on the test Redis: ``ruby_worker("ruby", env={...})``."""
    started: list[RubyWorker] = []

    def start(queues: str = "ruby", env: Optional[dict[str, str]] = None) -> RubyWorker:
        worker = RubyWorker(ruby, redis_url, queues, env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        err = worker.stop()
        assert "Error" not in err, f"the Ruby worker wrote on stderr:\n{err}"


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(redis=r, namespace="resque")


def ruby_ran(r: redis.Redis) -> list[dict[str, Any]]:
    """What the Ruby worker ran, in order (tracking_worker.rb's test:ruby:ran)."""
    return [json.loads(line) for line in r.lrange("test:ruby:ran", 0, -1)]


def wait_ruby_ran(r: redis.Redis, count: int, worker: RubyWorker) -> list[dict[str, Any]]:
    def enough() -> Optional[list[dict[str, Any]]]:
        worker.alive()
        found = ruby_ran(r)
        return found if len(found) >= count else None

    return wait_until(enough, f"{count} job(s) run by Ruby", timeout=15)


def items(r: redis.Redis, queue: str, ns: str = "resque:") -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in r.lrange(f"{ns}queue:{queue}", 0, -1)]


def record(r: redis.Redis, job_id: str, ns: str = "resque:") -> dict[str, str]:
    raw = r.hgetall(workflow.WorkflowKeys(ns).record(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def failed_entries(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in r.lrange("resque:failed", 0, -1)]


def script_calls(r: redis.Redis) -> int:
    """EVAL and EVALSHA calls the server ran since the last CONFIG RESETSTAT."""
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("eval", "evalsha", "eval_ro", "evalsha_ro"))


# -- the Ruby files themselves ------------------------------------------------------------------


@pytest.mark.parametrize("path", [TRACKING, WORKER, FAKE_RESQUE_JOB], ids=lambda p: p.name)
def test_ruby_files_are_valid_without_warnings(ruby: str, path: Path) -> None:
    proc = subprocess.run([ruby, "-wc", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Syntax OK"
    assert proc.stderr == ""


def test_ruby_sends_the_very_script_python_sends(ruby: str) -> None:
    """The module reads pyresque_workflow.lua beside it, also where it is installed
    (pyresqueworker/ruby_client links to examples/ruby_client), so both sides send one text."""
    installed = ROOT / "pyresqueworker" / "ruby_client" / "pyresque_tracking.rb"
    proc = subprocess.run(
        [ruby, "-w", "-r", str(installed), "-e",
         "puts PyResque::Tracking::SCRIPT_SHA; print PyResque::Tracking::SCRIPT"],
        capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    sha, text = proc.stdout.split("\n", 1)
    assert text == workflow.WORKFLOW_SOURCE
    assert sha == hashlib.sha1(SCRIPT.read_bytes()).hexdigest()


def test_ruby_reads_tracking_fields_as_python_does(ruby: str) -> None:
    payloads: list[Any] = [
        {"class": "A", "args": [], "id": "abc", "pyresque": {"ttl": 60, "batch": "b1"}},
        {"class": "A", "args": [], "id": "abc", "pyresque": {}},
        {"class": "A", "args": [], "id": "abc", "pyresque": {"ttl": -5, "batch": 7}},
        {"class": "A", "args": [], "id": "abc", "pyresque": {"ttl": "60"}},
        {"class": "A", "args": [], "id": "abc", "pyresque": {"ttl": 2.5}},
        {"class": "A", "args": [], "id": "", "pyresque": {"ttl": 60}},
        {"class": "A", "args": [], "id": 5, "pyresque": {"ttl": 60}},
        {"class": "A", "args": [], "pyresque": {"ttl": 60}},
        {"class": "A", "args": [], "id": "abc", "pyresque": None},
        {"class": "A", "args": [], "id": "abc", "pyresque": [60]},
        {"class": "A", "args": [], "id": "abc"},
        ["not", "a", "hash"],
    ]
    code = ("require 'json'; JSON.parse(ARGV[0]).each { |p| t = PyResque::Tracking.tracking_of(p);"
            " puts JSON.generate(t && t.to_a) }")
    proc = subprocess.run([ruby, "-r", str(TRACKING), "-e", code, json.dumps(payloads)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ruby_view = [json.loads(line) for line in proc.stdout.split("\n") if line]
    python_view = [list(t) if (t := workflow.tracking_of(p)) else None for p in payloads]
    assert ruby_view == python_view
    assert python_view[0] == ["abc", 60, "b1"]  # (the comparison is not between two Nones)


def test_install_wraps_resque_job_once(ruby: str) -> None:
    """Loaded before Resque::Job exists, the module wraps it when a class extends it; an
    explicit install after that (or a second one) changes nothing."""
    code = """
      module Resque; class Job; def perform = :performed; end; end
      before = Resque::Job.ancestors.include?(PyResque::Tracking::JobWrapper)
      class Square; extend PyResque::Tracking; end
      PyResque::Tracking.install(Resque::Job)
      PyResque::Tracking.install(Resque::Job)
      count = Resque::Job.ancestors.count(PyResque::Tracking::JobWrapper)
      wrapped = Square.singleton_class.ancestors.include?(PyResque::Tracking::PerformWrapper)
      puts [before, count, wrapped].inspect
    """
    proc = subprocess.run([ruby, "-w", "-r", str(TRACKING), "-e", code],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[false, 1, true]"


# -- results ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ns,mode", [("resque", ""), ("other", "explicit")],
                         ids=["resque-redis", "configured-redis"])
def test_python_gets_the_result_of_a_ruby_job(
    r: redis.Redis, ruby_worker: Callable[..., RubyWorker], ns: str, mode: str
) -> None:
    """Through Resque.redis (a DataStore around a Namespace around the client), or through
    PyResque::Tracking.redis/.namespace; with the script unknown to the server (NOSCRIPT)."""
    client = Client(redis=r, namespace=ns)
    square = client.enqueue_to("ruby", "RubySquare", 12, result_ttl=3600)
    echo = client.enqueue_to("ruby", "RubyEcho", 3, "x", {"k": [None]}, result_ttl=600)
    assert square.status() == "queued"
    r.script_flush()
    worker = ruby_worker("ruby", env={"RESQUE_NAMESPACE": ns, "TRACKING_REDIS": mode})

    assert square.result(timeout=15) == 144
    assert echo.result(timeout=15) == {"args": [3, "x", {"k": [None]}], "from": "ruby",
                                       "float": 2.5, "none": None}
    assert square.status() == "succeeded" and echo.status() == "succeeded"
    keys = workflow.WorkflowKeys(f"{ns}:")
    assert 3000 < r.ttl(keys.record(square)) <= 3600  # kept for the job's result ttl
    assert 0 < r.ttl(keys.record(echo)) <= 600
    assert record(r, square, f"{ns}:")["result"] == "144"
    # Ruby sent the file's own text (EVAL after NOSCRIPT, so the server has it now).
    assert r.script_exists(hashlib.sha1(SCRIPT.read_bytes()).hexdigest()) == [True]
    assert [line["worker"] for line in wait_ruby_ran(r, 2, worker)] == [worker.id, worker.id]
    other = "resque" if ns == "other" else "other"
    assert r.keys(f"{other}:pyresque:*") == []


def test_a_result_is_kept_only_when_asked(client: Client, r: redis.Redis,
                                          ruby_worker: Callable[..., RubyWorker]) -> None:
    """Tracked without a result ttl (a batch member): its state, no result."""
    with client.batch() as batch:
        member = batch.enqueue_to("ruby", "RubySquare", 2)
    ruby_worker("ruby")
    wait_until(lambda: member.status() == "succeeded", "the Ruby job's success")
    assert member.result(timeout=1) is None
    assert "result" not in record(r, member)


# -- failures -----------------------------------------------------------------------------------


def test_a_ruby_failure_reaches_python(client: Client, r: redis.Redis,
                                       ruby_worker: Callable[..., RubyWorker]) -> None:
    ref = client.enqueue_to("ruby", "RubyBoom", "it broke", result_ttl=60)
    worker = ruby_worker("ruby")
    with pytest.raises(JobFailed) as caught:
        ref.result(timeout=15)
    failed = caught.value
    assert failed.job_id == ref
    assert (failed.exception, failed.error) == ("Jobs::Error", "it broke")
    # Innermost frame first, cut before Resque's job.rb as Resque's failure entry is.
    assert "tracking_worker.rb" in failed.backtrace[0] and "explode" in failed.backtrace[0]
    assert "perform" in failed.backtrace[1]
    assert not any("/lib/resque/job.rb" in line for line in failed.backtrace)
    assert set(failed.failure) == RECORD_FAILURE_KEYS
    assert FAILED_AT_RE.match(failed.failure["failed_at"])
    assert (failed.failure["worker"], failed.failure["queue"]) == (worker.id, "ruby")
    assert ref.status() == "failed"
    # The record says what Resque's failure entry says, minus the payload (Resque runs the
    # failure hooks first, then writes its entry: the loop notes the job after both).
    wait_ruby_ran(r, 1, worker)
    (entry,) = failed_entries(r)
    for name in ("exception", "error", "backtrace", "worker", "queue"):
        assert entry[name] == failed.failure[name], name


@pytest.mark.parametrize("mode,error", [("boom", "boom"), ("late", "late")])
def test_hooks_run_in_resque_order_and_a_late_failure_is_a_failure(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker], mode: str, error: str
) -> None:
    """"late": perform succeeded but an after_perform hook sorted after the module's raised,
    so Resque recorded a failure: the job failed for Python too (not succeeded, then failed)."""
    ok = client.enqueue_to("ruby", "RubyHooked", "ok", result_ttl=60)
    bad = client.enqueue_to("ruby", "RubyHooked", mode, result_ttl=60)
    worker = ruby_worker("ruby")
    assert ok.result(timeout=15) == "hooked ok"
    with pytest.raises(JobFailed) as caught:
        bad.result(timeout=15)
    assert (caught.value.exception, caught.value.error) == ("Jobs::Error", error)
    assert bad.status() == "failed"
    wait_ruby_ran(r, 2, worker)  # (the failure entry is written after the hooks ran)
    hooks = [h.decode() for h in r.lrange("test:ruby:hooks", 0, -1)]
    good_run = ["before_perform_a", "around_perform_a:in", "perform", "around_perform_a:out",
                "after_perform_a", "after_perform_zz"]
    if mode == "boom":
        bad_run = ["before_perform_a", "around_perform_a:in", "perform", "on_failure_a:boom"]
    else:
        bad_run = [*good_run, "on_failure_a:late"]
    assert hooks == good_run + bad_run
    assert [e["error"] for e in failed_entries(r)] == [error]


def test_a_job_a_before_hook_stops_counts_as_succeeded(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    ref = client.enqueue_to("ruby", "RubySkip", 1, result_ttl=60)
    worker = ruby_worker("ruby")
    assert [line["outcome"] for line in wait_ruby_ran(r, 1, worker)] == ["succeeded"]
    assert ref.status() == "succeeded"
    assert ref.result(timeout=1) is None
    assert failed_entries(r) == []


def test_a_job_resque_retry_will_retry_is_retrying(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    ref = client.enqueue_to("ruby", "RubyRetry", result_ttl=60)
    worker = ruby_worker("ruby")
    wait_ruby_ran(r, 1, worker)
    assert ref.status() == "retrying"
    assert "failure" not in record(r, ref)
    with pytest.raises(TimeoutError):
        ref.result(timeout=0.3)


def test_a_dirty_exit_outside_perform_is_a_failure(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    """Resque's parent fails a killed child's job through Job#fail, without Job#perform: the
    module still knows the job (run_failure_hooks is wrapped too)."""
    ref = client.enqueue_to("ruby", "RubyKilled", result_ttl=60)
    worker = ruby_worker("ruby")
    with pytest.raises(JobFailed) as caught:
        ref.result(timeout=15)
    assert caught.value.exception == "Resque::DirtyExit"
    assert caught.value.failure["worker"] == worker.id


def test_untracked_jobs_and_classes_without_the_module_cost_nothing(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    """A payload without "pyresque" (what Ruby enqueues) and a class without the module: no
    script call, nothing written under pyresque:, and a tracked job of such a class stays
    queued as far as Python knows."""
    client.enqueue_to("ruby", "RubySquare", 4)
    client.enqueue_to("ruby", "RubyBoom", "untracked")
    plain = client.enqueue_to("ruby", "RubyPlain", 1, result_ttl=60)
    before = set(r.keys("resque:pyresque:*"))
    r.config_resetstat()
    worker = ruby_worker("ruby")
    ran = wait_ruby_ran(r, 3, worker)
    assert [line["outcome"] for line in ran] == ["succeeded", "failed", "succeeded"]
    assert script_calls(r) == 0
    assert set(r.keys("resque:pyresque:*")) == before
    assert plain.status() == "queued"


# -- batches ------------------------------------------------------------------------------------


def test_a_batch_run_by_ruby_and_python_calls_back_once(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker],
    spawn_worker: Callable[..., Any]
) -> None:
    with client.batch(on_success=("Notify", [42]), on_complete=("Done", []),
                      queue="callbacks") as batch:
        rubies = [batch.enqueue_to("ruby", "RubySquare", n) for n in (1, 2, 3)]
        pythons = [batch.enqueue_to("python", "Record", "p", n) for n in (1, 2)]
    worker = ruby_worker("ruby")
    spawn_worker("--queues", "python")

    def complete() -> Any:
        worker.alive()
        status = client.batch_status(batch.id)
        return status if status is not None and status.complete else None

    status = wait_until(complete, "the batch's completion", timeout=20)
    assert (status.total, status.pending, status.succeeded, status.failed) == (5, 0, 5, 0)
    assert status.jobs == {job: "succeeded" for job in rubies + pythons}
    assert status.waiting_for == []
    assert [(i["class"], i["args"]) for i in items(r, "callbacks")] == [("Notify", [42]),
                                                                         ("Done", [])]
    assert {ref.status() for ref in rubies + pythons} == {"succeeded"}

    # A Ruby job run again (its worker killed after it ran): its end counts once.
    again = next(line["raw"] for line in ruby_ran(r) if line["args"] == [2])
    r.rpush("resque:queue:ruby", again)
    wait_ruby_ran(r, 4, worker)
    status = client.batch_status(batch.id)
    assert status is not None
    assert (status.succeeded, status.failed, status.pending) == (5, 0, 0)
    assert len(items(r, "callbacks")) == 2


def test_a_batch_with_a_ruby_failure_calls_on_complete_only(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    with client.batch(on_success=("Notify", [1]), on_complete=("Done", [2]),
                      queue="callbacks") as batch:
        good = batch.enqueue_to("ruby", "RubySquare", 5)
        bad = batch.enqueue_to("ruby", "RubyBoom", "in a batch")
    ruby_worker("ruby")
    status = wait_until(lambda: (s := client.batch_status(batch.id)) and s.complete and s,
                        "the batch's completion", timeout=15)
    assert (status.succeeded, status.failed) == (1, 1)
    assert status.jobs == {good: "succeeded", bad: "failed"}
    assert [(i["class"], i["args"]) for i in items(r, "callbacks")] == [("Done", [2])]


def test_a_ruby_class_without_the_module_holds_its_batch(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    with client.batch(on_success=("Notify", []), queue="callbacks") as batch:
        tracked = batch.enqueue_to("ruby", "RubySquare", 6)
        plain = batch.enqueue_to("ruby", "RubyPlain", 7)
    worker = ruby_worker("ruby")
    wait_ruby_ran(r, 2, worker)
    wait_until(lambda: tracked.status() == "succeeded", "the tracked member's success")
    status = client.batch_status(batch.id)
    assert status is not None and not status.complete
    assert (status.pending, status.succeeded) == (1, 1)
    assert status.waiting_for == [plain]
    assert items(r, "callbacks") == []


# -- dependencies -------------------------------------------------------------------------------


def test_a_python_job_waits_for_its_ruby_dependency(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    parent = client.enqueue_to("ruby", "RubySquare", 5, result_ttl=60)
    child = client.enqueue_to("python", "Record", "after", depends_on=[parent])
    assert child.status() == "scheduled"
    assert items(r, "python") == []
    ruby_worker("ruby")
    assert parent.result(timeout=15) == 25
    wait_until(lambda: items(r, "python"), "the dependent on its queue")
    (item,) = items(r, "python")
    assert (item["class"], item["args"], item["id"]) == ("Record", ["after"], child)
    assert child.status() == "queued"


def test_a_failed_ruby_dependency_cancels_the_python_job(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker]
) -> None:
    parent = client.enqueue_to("ruby", "RubyBoom", "no", result_ttl=60)
    child = client.enqueue_to("python", "Record", "after", depends_on=[parent])
    grandchild = client.enqueue_to("python", "Record", "later", depends_on=[child])
    ruby_worker("ruby")
    with pytest.raises(JobFailed):
        child.result(timeout=15)
    assert parent.status() == "failed"
    assert child.status() == "canceled" and grandchild.status() == "canceled"
    assert record(r, child)["canceled_by"] == parent
    time.sleep(0.2)  # (nothing is pushed late either)
    assert items(r, "python") == []


# -- the payload, as Ruby decodes and re-encodes it -----------------------------------------


@pytest.mark.parametrize("case", ["unicode", "floats", "control_chars", "big_int", "nested"])
def test_a_tracked_payload_survives_ruby(
    client: Client, r: redis.Redis, ruby_worker: Callable[..., RubyWorker], case: str
) -> None:
    """Python's tracked item is Ruby's bytes (golden/enqueue-oj.json) with "id" and "pyresque"
    after class and args; Ruby decodes and re-encodes it to the same bytes, and Resque's
    failure entry embeds it with the extra fields."""
    golden = GOLDEN_ENQUEUE[case]["bytes"]
    args = json.loads(golden)["args"]
    ref = client.enqueue_to("ruby", "Golden::Job", *args, result_ttl=60)
    worker = ruby_worker("ruby")
    with pytest.raises(JobFailed) as caught:
        ref.result(timeout=15)
    assert caught.value.error == f"golden {len(args)}"
    (line,) = wait_ruby_ran(r, 1, worker)  # (and so the failure entry is written)
    raw = line["raw"]
    assert raw.startswith(golden[:-1] + ',"id":"' + ref + '","pyresque":')
    assert line["reencoded"] == raw
    (entry,) = failed_entries(r)
    payload = json.loads(raw)
    assert entry["payload"] == payload
    assert list(entry["payload"]) == ["class", "args", "id", "pyresque"]
    assert entry["payload"]["pyresque"] == {"ttl": 60}
    (failed_raw,) = r.lrange("resque:failed", 0, -1)
    assert ('"payload":' + raw + ',"exception"').encode() in failed_raw
