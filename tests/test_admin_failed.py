"""``pyresque failed ...`` on a real Redis: Ruby's failure entries, ours, and resque-web's ids
(list indexes); retry/remove checked in Redis and by Ruby; retry-all in batches with progress."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
import redis
from admin_helpers import (
    FAILED,
    failure,
    golden_failures,
    invoke,
    invoke_json,
    one_error_line,
)
from conftest import RUBY_CLIENT
from worker_helpers import wait_until

from pyresqueworker.client._client import Client
from pyresqueworker.client.failed_queue import FailureFilter
from pyresqueworker.jobs.activejob import JOB_WRAPPER
from pyresqueworker.protocol import wire

RETRIED_AT = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \S+$")
ROW_KEYS = ["index", "valid", "failed_at", "retried_at", "queue", "class", "args", "exception",
            "error", "worker", "attempts", "raw"]


def active_job_failure(job_class: str) -> str:
    payload = {"class": JOB_WRAPPER, "args": [{"job_class": job_class, "job_id": "j1",
                                               "arguments": []}]}
    return wire.dumps({"failed_at": "2024/01/15 09:50:00 UTC", "payload": payload,
                       "exception": "RuntimeError", "error": "rails", "backtrace": [],
                       "worker": "rails:1:default", "queue": "default"})


def run_ruby(ruby: str, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "RESQUE_NAMESPACE": "resque"}
    proc = subprocess.run([ruby, str(RUBY_CLIENT / "resque_compat.rb"), *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


# -- list and show ----------------------------------------------------------------------------


def test_list_ruby_failures_as_table_and_json(redis_url: str, r: redis.Redis) -> None:
    golden = golden_failures()
    r.rpush(FAILED, *golden, "not json")
    rows = invoke_json(redis_url, "failed", "list")
    assert all(list(row) == ROW_KEYS for row in rows)
    boom, no_class, broken = rows
    assert boom == {"index": 0, "valid": True, "failed_at": "2026/11/23 07:35:33 UTC",
                    "retried_at": None, "queue": "high", "class": "RubyBoom",
                    "args": [{"k": "v"}], "exception": "RuntimeError", "error": "boom",
                    "worker": "vm:30579:high,low", "attempts": None, "raw": None}
    assert no_class["error"] == json.loads(golden[1])["error"]  # whole, newlines and all
    assert broken == {**dict.fromkeys(ROW_KEYS), "index": 2, "valid": False, "raw": "not json"}
    lines = invoke(redis_url, "failed", "list").stdout.splitlines()
    assert lines[0].split() == ["INDEX", "FAILED", "QUEUE", "CLASS", "EXCEPTION", "ERROR",
                                "RETRIED"]
    assert re.match(r"^\s+0\s+\S+ ago\s+high\s+RubyBoom\s+RuntimeError\s+boom$", lines[1])
    assert re.search(r"NameError\s+uninitialized constant NoSuchClass$", lines[2])  # 1st line
    assert "(could not be parsed)" in lines[3] and "not json" in lines[3]
    assert lines[4].startswith("3 shown, indexes 0-2 of 3 failures")


def test_list_shows_the_newest_by_default_and_pages_by_index(redis_url: str,
                                                             r: redis.Redis) -> None:
    r.rpush(FAILED, *[failure("q", "Job", [n]) for n in range(30)])
    assert [row["index"] for row in invoke_json(redis_url, "failed", "list")] == list(
        range(10, 30))
    assert [row["index"] for row in invoke_json(redis_url, "failed", "list", "-n", "3")] == [
        27, 28, 29]
    page = invoke_json(redis_url, "failed", "list", "--start", "5", "--count", "4")
    assert [row["index"] for row in page] == [5, 6, 7, 8]
    assert [row["args"] for row in page] == [[5], [6], [7], [8]]
    assert len(invoke_json(redis_url, "failed", "list", "--count", "0")) == 30
    assert invoke_json(redis_url, "failed", "list", "--start", "40") == []


def test_list_filters_by_queue_and_class(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, failure("a", "Job", [0]), failure("b", "Job", [1]),
            failure("a", "Other", [2]), active_job_failure("HelloJob"), "junk",
            failure("a", "Job", [5]))
    by_queue = invoke_json(redis_url, "failed", "list", "--queue", "a")
    assert [row["index"] for row in by_queue] == [0, 2, 5]
    by_class = invoke_json(redis_url, "failed", "list", "--class", "Job", "--queue", "a")
    assert [row["index"] for row in by_class] == [0, 5]
    [rails] = invoke_json(redis_url, "failed", "list", "--class", "HelloJob")
    assert (rails["index"], rails["class"]) == (3, "HelloJob")
    newest = invoke_json(redis_url, "failed", "list", "--class", "Job", "--count", "1")
    assert [row["index"] for row in newest] == [5]
    result = invoke(redis_url, "failed", "list", "--class", "Nope")
    assert result.stdout == "no matching failures (of 6)\n"
    assert invoke(redis_url, "failed", "list", "--class", "Nope").exit_code == 0


def test_show_prints_the_whole_entry_with_its_backtrace(redis_url: str, r: redis.Redis) -> None:
    golden = golden_failures()
    r.rpush(FAILED, *golden, "\x1b[2J")
    detail = invoke_json(redis_url, "failed", "show", "1")
    assert detail == {"index": 1, "valid": True, "entry": json.loads(golden[1]),
                      "raw": golden[1]}
    text = invoke(redis_url, "failed", "show", "1").stdout
    assert re.search(r"^failed_at\s+2026/11/23 07:35:33 UTC \(\S+ ago\)$", text, re.M)
    assert re.search(r"^class\s+NoSuchClass$", text, re.M)
    assert re.search(r"^backtrace\s+/gems/resque-3\.0\.0/lib/resque\.rb:98:in `block in "
                     r"constantize'$", text, re.M)
    assert re.search(r"^\s+/gems/resque-3\.0\.0/lib/resque\.rb:92:in `constantize'$", text,
                     re.M)
    assert re.search(r"^\s+\^\^\^\^", text, re.M)  # the error's later lines, indented
    broken = invoke(redis_url, "failed", "show", "2").stdout
    assert "(could not be parsed)" in broken
    assert "\x1b" not in broken and "\\x1b[2J" in broken
    assert invoke_json(redis_url, "failed", "show", "2")["raw"] == "\x1b[2J"


def test_show_a_missing_index(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, failure("q", "Job", []))
    result = invoke(redis_url, "failed", "show", "1")
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "pyresque: error: there is no failure at index 1"


def test_a_bad_index_says_what_an_index_is_and_how_many_there_are(redis_url: str,
                                                                    r: redis.Redis) -> None:
    result = invoke(redis_url, "failed", "show", "abc")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "'abc' is not a failure index" in line and "e.g. 0" in line and "0..9" in line
    assert line.endswith("the failed list is empty")
    assert "integer range" not in line
    r.rpush(FAILED, *[failure("q", "Job", [n]) for n in range(3)])
    for args in (["show", "abc"], ["show", "5..2"], ["retry", "0", "x"], ["remove", "--", "-3"]):
        result = invoke(redis_url, "failed", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert one_error_line(result.stderr).endswith("there are 3 failures (indexes 0..2)")
    assert r.llen(FAILED) == 3 and r.llen("resque:queue:q") == 0


def test_ranges_of_indexes(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, *[failure("q", "Job", [n]) for n in range(5)])
    assert [row["index"] for row in invoke_json(redis_url, "failed", "show", "1..2")] == [1, 2]
    assert invoke_json(redis_url, "failed", "show", "1")["index"] == 1  # one index: one object
    text = invoke(redis_url, "failed", "show", "3..99").stdout  # stops at the end
    assert re.findall(r"^index\s+(\d+)$", text, re.M) == ["3", "4"]
    data = invoke_json(redis_url, "failed", "retry", "0..1")
    assert [row["index"] for row in data["retried"]] == [0, 1]
    result = invoke(redis_url, "failed", "remove", "3..4", "0")
    assert result.exit_code == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "removed 4", "removed 3", "removed 0"]
    assert r.llen(FAILED) == 2


def test_retry_attempts_are_shown(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, failure("q", "Flaky", [1], attempts=5), golden_failures()[0])
    ours, ruby = invoke_json(redis_url, "failed", "list")
    assert (ours["attempts"], ruby["attempts"]) == (5, None)
    assert invoke_json(redis_url, "failed", "show", "0")["entry"]["attempts"] == 5
    assert re.search(r"^attempts\s+5$", invoke(redis_url, "failed", "show", "0").stdout, re.M)
    assert "attempts" not in invoke(redis_url, "failed", "show", "1").stdout  # Ruby's: none


# -- retry and remove -------------------------------------------------------------------------


def test_retry_marks_entries_and_enqueues_their_jobs(redis_url: str, r: redis.Redis) -> None:
    golden = golden_failures()
    r.rpush(FAILED, *golden)
    result = invoke(redis_url, "failed", "retry", "1", "0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ("retried 1: NoSuchClass to high\n"
                             "retried 0: RubyBoom to high\n")
    assert r.lrange("resque:queue:high", 0, -1) == [b'{"class":"NoSuchClass","args":[1]}',
                                                    b'{"class":"RubyBoom","args":[{"k":"v"}]}']
    for index, raw in enumerate(golden):
        stored = r.lindex(FAILED, index) or b""
        retried_at = json.loads(stored)["retried_at"]
        assert RETRIED_AT.match(retried_at)
        # Ruby's bytes kept, retried_at appended as the last key, as resque-web does
        assert stored == (raw[:-1] + f',"retried_at":"{retried_at}"}}').encode()
    rows = invoke_json(redis_url, "failed", "list")
    assert all(RETRIED_AT.match(row["retried_at"]) for row in rows)
    assert re.search(r"\S+ ago$", invoke(redis_url, "failed", "list").stdout.splitlines()[1])


def test_retry_reports_each_bad_index_and_exits_1(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, failure("q", "Job", [1]), "junk")
    result = invoke(redis_url, "--json", "failed", "retry", "0", "1", "9")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [row["index"] for row in data["retried"]] == [0]
    assert [error["index"] for error in data["errors"]] == [1, 9]
    assert "not a JSON object" in data["errors"][0]["error"]
    assert r.llen("resque:queue:q") == 1
    result = invoke(redis_url, "failed", "retry", "9")
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "pyresque: error: there is no failure at index 9"


def test_remove_several_indexes_of_the_list_as_it_was(redis_url: str, r: redis.Redis) -> None:
    entries = [failure("q", "Job", [n]) for n in range(5)]
    r.rpush(FAILED, *entries)
    result = invoke(redis_url, "failed", "remove", "1", "3", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ("removed 3: Job from q, RuntimeError\n"
                             "removed 1: Job from q, RuntimeError\n")
    assert r.lrange(FAILED, 0, -1) == [entries[n].encode() for n in (0, 2, 4)]
    data = invoke_json(redis_url, "failed", "remove", "2")
    assert [row["args"] for row in data["removed"]] == [[4]] and data["errors"] == []
    result = invoke(redis_url, "failed", "remove", "0", "7")
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "pyresque: error: there is no failure at index 7"
    assert r.lrange(FAILED, 0, -1) == [entries[2].encode()]


def test_remove_names_an_entry_without_class_or_queue(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, wire.dumps({"failed_at": "2024/01/15 09:50:00 UTC", "payload": {"args": []},
                                "exception": "RuntimeError", "error": "boom"}),
            wire.dumps({"payload": "text", "queue": None}))
    result = invoke(redis_url, "failed", "remove", "0", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ("removed 1: (no class) from (no queue), (no exception)\n"
                             "removed 0: (no class) from (no queue), RuntimeError\n")
    assert "None" not in result.stdout


def test_remove_leaves_a_concurrent_ruby_blank_alone(client: Client, r: redis.Redis) -> None:
    # resque-web's remove is LSET "" then LREM 1 "": an index holding the blank is skipped,
    # and the net result is the same whichever client's LREM runs.
    r.rpush(FAILED, failure("q", "A", []), "", failure("q", "C", []))
    removed = client.failed_queue.remove_many([1, 2])
    assert [index for index, _ in removed] == [2]
    assert r.lrange(FAILED, 0, -1) == [failure("q", "A", []).encode()]


# -- retry-all --------------------------------------------------------------------------------


def test_retry_all_in_batches_with_progress(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, *[failure("q", "Job", [n]) for n in range(10)])
    result = invoke(redis_url, "failed", "retry-all", "--batch-size", "3", "--progress")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "requeued 10 of 10 failures examined\n"
    assert "examined: 10 / 10 (100%)" in result.stderr and result.stderr.endswith("\n")
    assert [json.loads(job)["args"] for job in r.lrange("resque:queue:q", 0, -1)] == [
        [n] for n in range(10)]
    assert all("retried_at" in (entry or {}) for entry in Client(r).failed(0, 10))
    quiet = invoke(redis_url, "--json", "failed", "retry-all", "--skip-retried")
    assert json.loads(quiet.stdout) == {"requeued": 0, "examined": 10}
    assert quiet.stderr == ""  # no progress line when stderr is not a terminal


def test_batched_requeue_reports_progress_per_batch(client: Client, r: redis.Redis) -> None:
    r.rpush(FAILED, *[failure("q", "Job", [n]) for n in range(10)])
    calls: list[tuple[int, int]] = []
    assert client.requeue_matching(batch_size=4, progress=lambda *a: calls.append(a)) == 10
    assert calls == [(4, 10), (8, 10), (10, 10)]
    with pytest.raises(ValueError):
        client.requeue_matching(batch_size=0)


def test_retry_all_filters(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, failure("a", "Job", [0]), failure("b", "Job", [1]),
            failure("a", "Other", [2]), active_job_failure("HelloJob"), "junk",
            failure("a", "Job", [4], retried_at="2024/01/16 00:00:00 UTC"))
    assert invoke_json(redis_url, "failed", "retry-all", "--queue", "a", "--class", "Job",
                       "--skip-retried") == {"requeued": 1, "examined": 6}
    assert r.lrange("resque:queue:a", 0, -1) == [b'{"class":"Job","args":[0]}']
    assert invoke_json(redis_url, "failed", "retry-all", "--class", "HelloJob")["requeued"] == 1
    assert json.loads(r.lindex("resque:queue:default", 0) or b"")["class"] == JOB_WRAPPER
    assert invoke_json(redis_url, "failed", "retry-all")["requeued"] == 5  # junk is skipped


def test_failure_filter_matches_like_resque_web(client: Client) -> None:
    entry: dict[str, Any] = json.loads(active_job_failure("HelloJob"))
    assert FailureFilter(class_name="HelloJob")(entry)
    assert FailureFilter(class_name=JOB_WRAPPER)(entry)
    assert not FailureFilter(queue="other")(entry)
    assert FailureFilter(skip_retried=True)({**entry, "retried_at": None})
    assert not FailureFilter(skip_retried=True)({**entry, "retried_at": "x"})


# -- clear ------------------------------------------------------------------------------------


def test_clear_asks_first(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, *golden_failures())
    result = invoke(redis_url, "failed", "clear", input="n\n")
    assert result.exit_code == 1 and r.llen(FAILED) == 2
    assert "Delete all 2 failures?" in result.stderr
    assert "nothing deleted" in result.stderr.splitlines()[-1]
    result = invoke(redis_url, "failed", "clear")  # no answer at all (not a terminal)
    assert result.exit_code == 1 and r.llen(FAILED) == 2
    result = invoke(redis_url, "failed", "clear", input="y\n")
    assert result.exit_code == 0 and result.stdout == "deleted 2 failures\n"
    assert not r.exists(FAILED)
    r.rpush(FAILED, "x")
    assert invoke_json(redis_url, "failed", "clear", "--yes") == {"cleared": 1}
    assert invoke(redis_url, "failed", "clear").stdout == "deleted 0 failures\n"


def test_clear_retried(redis_url: str, r: redis.Redis) -> None:
    r.rpush(FAILED, failure("q", "A", []), failure("q", "B", [], retried_at="2024/01/16"),
            failure("q", "C", []))
    assert invoke(redis_url, "failed", "clear-retried").stdout == "removed 1 retried failures\n"
    assert [json.loads(x)["payload"]["class"] for x in r.lrange(FAILED, 0, -1)] == ["A", "C"]
    assert invoke_json(redis_url, "failed", "clear-retried") == {"removed": 0}


# -- with Ruby --------------------------------------------------------------------------------


@pytest.mark.ruby
def test_ruby_reads_the_list_after_our_edits_and_shares_the_ids(ruby: str, redis_url: str,
                                                                r: redis.Redis) -> None:
    r.rpush(FAILED, *golden_failures(), failure("low", "Third", [3]))
    assert invoke(redis_url, "failed", "retry", "0").exit_code == 0
    assert invoke(redis_url, "failed", "remove", "1").exit_code == 0
    run_ruby(ruby, redis_url, "check-failures")  # exits 1 where resque-web would choke
    # the id we list is the one resque-web's Retry takes
    [third] = invoke_json(redis_url, "failed", "list", "--class", "Third")
    run_ruby(ruby, redis_url, "requeue", str(third["index"]))
    assert r.lrange("resque:queue:low", 0, -1) == [b'{"class":"Third","args":[3]}']
    assert invoke_json(redis_url, "failed", "show", str(third["index"]))["entry"]["retried_at"]


@pytest.mark.ruby
def test_ruby_dequeues_what_pyresque_enqueued(ruby: str, redis_url: str, r: redis.Redis) -> None:
    assert invoke(redis_url, "enqueue", "Archive", '[35, "tar", {"a": 1.5}]', "-q",
                  "high").exit_code == 0
    proc = run_ruby(ruby, redis_url, "dequeue", "high", "Archive", '[35, "tar", {"a": 1.5}]')
    assert proc.stdout.strip() == "1" and r.llen("resque:queue:high") == 0


@pytest.mark.ruby
def test_ruby_active_job_shows_latency(ruby: str, redis_url: str) -> None:
    run_ruby(ruby, redis_url, "active-job", "default", "HelloJob", '["world"]')
    [row] = invoke_json(redis_url, "queues")
    assert row["name"] == "default" and row["size"] == 1
    assert row["oldest_enqueued_at"] and row["latency"] is not None
    wait_until(lambda: invoke_json(redis_url, "queues")[0]["latency"] >= 0, "a latency")


def test_retry_all_interrupted_says_how_far_it_got(redis_url: str, r: redis.Redis,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    r.rpush(FAILED, *[failure("q", "Job", [n]) for n in range(10)])
    real = Client.requeue_matching

    def interrupted(self: Client, wanted: Any = None, **kwargs: Any) -> int:
        progress = kwargs.pop("progress")

        def stop_after_first_batch(done: int, total: int) -> None:
            progress(done, total)
            raise KeyboardInterrupt

        return real(self, wanted, progress=stop_after_first_batch, **kwargs)

    monkeypatch.setattr(Client, "requeue_matching", interrupted)
    result = invoke(redis_url, "failed", "retry-all", "--batch-size", "4", "--progress")
    assert result.exit_code == 130
    assert result.stderr.endswith("\npyresque: interrupted after examining 4 of 10 failures; "
                                  "those retried are marked (--skip-retried resumes without "
                                  "repeating them)\n")
    assert r.llen("resque:queue:q") == 4
    monkeypatch.undo()
    assert invoke_json(redis_url, "failed", "retry-all", "--skip-retried") == {
        "requeued": 6, "examined": 10}
    assert r.llen("resque:queue:q") == 10
