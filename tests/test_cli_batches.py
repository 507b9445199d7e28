"""``pyresque batches`` and ``pyresque batches ID`` on a real Redis."""

from __future__ import annotations

import re
import time

import redis
from admin_helpers import invoke, invoke_json, one_error_line, run_script
from batch_helpers import NS, finish, hold, make_batch

from pyresqueworker import Client
from pyresqueworker.protocol.workflow import WorkflowKeys

ROW_KEYS = ["id", "description", "created_at", "completed_at", "complete", "total", "pending",
            "succeeded", "failed", "percent", "parent", "queue", "on_success", "on_complete"]


def section(stdout: str, title: str) -> list[list[str]]:
    """The table under a ``title`` line, each row split on its column gaps."""
    lines = stdout.split(title + "\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


def test_list_shows_the_newest_batches_first(redis_url: str, r: redis.Redis,
                                             client: Client) -> None:
    old, old_jobs = make_batch(client, [("Square", [1])], description="first")
    time.sleep(0.01)  # batches are listed by creation time, kept in milliseconds
    new, new_jobs = make_batch(client, [("Square", [n]) for n in range(4)],
                               description="the nightly run")
    finish(r, old, old_jobs[0])
    finish(r, new, new_jobs[0])
    finish(r, new, new_jobs[1], "failed")
    result = invoke(redis_url, "batches")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "PROGRESS", "TOTAL", "PENDING", "SUCCEEDED",
                                "FAILED", "STATE", "DESCRIPTION"]
    assert re.match(rf"^{new}\s+\d+s ago\s+50%\s+4\s+2\s+1\s+1\s+running\s+the nightly run$",
                    lines[1]), lines[1]
    assert re.match(rf"^{old}\s+\d+s ago\s+100%\s+1\s+0\s+1\s+0\s+complete\s+first$",
                    lines[2]), lines[2]
    assert len(lines) == 3

    rows = invoke_json(redis_url, "batches")
    assert [row["id"] for row in rows] == [new, old]
    assert list(rows[0]) == ROW_KEYS
    assert {key: rows[0][key] for key in ROW_KEYS if key not in ("id", "created_at")} == {
        "description": "the nightly run", "completed_at": None, "complete": False,
        "total": 4, "pending": 2, "succeeded": 1, "failed": 1, "percent": 50, "parent": None,
        "queue": "low", "on_success": {"class": "Notify", "args": [42]},
        "on_complete": {"class": "Done", "args": []}}
    assert rows[1]["complete"] is True and rows[1]["completed_at"] >= rows[1]["created_at"]
    assert [row["id"] for row in invoke_json(redis_url, "batches", "--limit", "1")] == [new]


def test_no_batches(redis_url: str) -> None:
    result = invoke(redis_url, "batches")
    assert (result.exit_code, result.stdout) == (0, "no batches\n")
    assert invoke_json(redis_url, "batches") == []


def test_detail_of_a_running_batch(redis_url: str, r: redis.Redis, client: Client) -> None:
    batch_id, (done, failed, held, queued) = make_batch(
        client, [("Square", [1]), ("Cube", [2]), ("Square", [3]), ("Report", [4])],
        on_success=("Notify", [42, "all"]), description="nightly")
    finish(r, batch_id, done)
    finish(r, batch_id, failed, "failed")
    hold(r, held)
    result = invoke(redis_url, "batches", batch_id)
    assert result.exit_code == 0, result.stderr
    facts = dict(re.split(r"\s{2,}", line, maxsplit=1)
                 for line in result.stdout.split("\n\n", 1)[0].splitlines())
    assert facts["batch"] == batch_id and facts["description"] == "nightly"
    assert facts["state"] == "running, 2 of 4 finished (50%)"
    assert [facts[key] for key in ("total", "pending", "succeeded", "failed")] == [
        "4", "2", "1", "1"]
    assert facts["completed"] == "-" and facts["parent"] == "-" and facts["queue"] == "low"
    assert facts["on_success"] == 'Notify(42,"all")  (when the batch completes)'
    assert facts["on_complete"] == "Done()  (when the batch completes)"
    assert re.match(r"^\d+s ago \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$", facts["created"])
    waiting = section(result.stdout, "waiting for 2:")
    assert waiting[0] == ["MEMBER", "CLASS", "JOB STATE"]
    assert sorted(waiting[1:]) == sorted([[held, "Square", "running"],
                                          [queued, "Report", "queued"]])
    members = section(result.stdout, "members (4):")
    assert members[0] == ["MEMBER", "CLASS", "QUEUE", "STATE", "JOB STATE"]
    assert members[1:] == [
        *sorted([[held, "Square", "q", "pending", "running"],
                 [queued, "Report", "q", "pending", "queued"]]),
        [failed, "Cube", "q", "failed", "failed"],
        [done, "Square", "q", "succeeded", "succeeded"],
    ]

    detail = invoke_json(redis_url, "batches", batch_id)
    assert list(detail) == [*ROW_KEYS, "members_total", "members", "waiting_total",
                            "waiting_for"]
    assert (detail["pending"], detail["members_total"], detail["waiting_total"]) == (2, 4, 2)
    assert {row["id"]: (row["kind"], row["state"], row["class"], row["queue"], row["job_state"])
            for row in detail["members"]} == {
        done: ("job", "succeeded", "Square", "q", "succeeded"),
        failed: ("job", "failed", "Cube", "q", "failed"),
        held: ("job", "pending", "Square", "q", "running"),
        queued: ("job", "pending", "Report", "q", "queued")}
    assert sorted(row["id"] for row in detail["waiting_for"]) == sorted([held, queued])


def test_detail_limit_cuts_the_members_and_says_so(redis_url: str, client: Client) -> None:
    batch_id, jobs = make_batch(client, [("Square", [n]) for n in range(5)])
    result = invoke(redis_url, "batches", batch_id, "--limit", "2")
    assert result.exit_code == 0, result.stderr
    assert [row[0] for row in section(result.stdout, "members (5):")[1:3]] == sorted(jobs)[:2]
    assert result.stdout.count("... 3 more (--limit 0 shows all)") == 2
    detail = invoke_json(redis_url, "batches", batch_id, "--limit", "2")
    assert (len(detail["members"]), len(detail["waiting_for"])) == (2, 2)
    detail = invoke_json(redis_url, "batches", batch_id, "--limit", "0")
    assert (len(detail["members"]), len(detail["waiting_for"])) == (5, 5)


def test_detail_of_a_complete_batch_and_its_child(redis_url: str, r: redis.Redis,
                                                  client: Client) -> None:
    parent, (ok, bad) = make_batch(client, [("Square", [1]), ("Square", [2])])
    child, (child_job,) = make_batch(client, [("Cube", [3])], on_success=None,
                                     on_complete=None, parent=parent)
    finish(r, parent, bad, "failed")
    stdout = invoke(redis_url, "batches", parent).stdout
    assert sorted(section(stdout, "waiting for 2:")[1:]) == sorted([
        [f"batch {child}", "(child batch)", "-"], [ok, "Square", "queued"]])
    finish(r, parent, ok)
    finish(r, child, child_job)
    result = invoke(redis_url, "batches", parent)
    assert result.exit_code == 0, result.stderr
    assert "waiting for" not in result.stdout
    assert re.search(r"^state\s+complete, 3 of 3 finished \(100%\)$", result.stdout, re.M)
    assert re.search(r"^completed\s+\d+s ago \(.*Z\), after \d+s$", result.stdout, re.M)
    assert re.search(r"^on_success\s+Notify\(42\)  \(not enqueued: a member failed\)$",
                     result.stdout, re.M)
    assert re.search(r"^on_complete\s+Done\(\)  \(enqueued to low\)$", result.stdout, re.M)
    assert [f"batch {child}", "(child batch)", "-", "succeeded", "-"] in section(
        result.stdout, "members (3):")
    result = invoke(redis_url, "batches", child)
    assert re.search(rf"^parent\s+{parent}$", result.stdout, re.M)
    assert re.search(r"^on_success\s+-$", result.stdout, re.M)
    assert invoke_json(redis_url, "batches", child)["parent"] == parent


def test_a_member_whose_record_expired_is_still_listed(redis_url: str, r: redis.Redis,
                                                       client: Client) -> None:
    batch_id, (job_id,) = make_batch(client, [("Square", [1])])
    r.delete(WorkflowKeys(NS).record(job_id))
    stdout = invoke(redis_url, "batches", batch_id).stdout
    assert section(stdout, "waiting for 1:")[1:] == [[job_id, "(record expired)", "-"]]
    assert section(stdout, "members (1):")[1:] == [
        [job_id, "(record expired)", "-", "pending", "-"]]
    [member] = invoke_json(redis_url, "batches", batch_id)["members"]
    assert member == {"member": job_id, "kind": "job", "id": job_id, "state": "pending",
                      "class": None, "queue": None, "job_state": None}


def test_terminal_controls_in_a_description_are_shown_escaped(redis_url: str,
                                                              client: Client) -> None:
    batch_id, _ = make_batch(client, [("Square", [1])], description="red \x1b[31m<b>")
    for args in (("batches",), ("batches", batch_id)):
        result = invoke(redis_url, *args)
        assert "\x1b" not in result.stdout and "red \\x1b[31m<b>" in result.stdout


def test_an_unknown_batch_is_one_error_line(redis_url: str) -> None:
    result = invoke(redis_url, "batches", "no-such-batch")
    assert result.exit_code == 1 and result.stdout == ""
    assert "there is no batch 'no-such-batch'" in one_error_line(result.stderr)
    result = invoke(redis_url, "batches", "no-such-batch", "--json")
    assert result.exit_code == 1 and "no-such-batch" in one_error_line(result.stderr)


def test_the_installed_script(redis_url: str, client: Client) -> None:
    batch_id, _ = make_batch(client, [("Square", [1])])
    result = run_script("batches", batch_id, redis_url=redis_url)
    assert result.returncode == 0, result.stderr
    assert f"batch        {batch_id}" in result.stdout
    result = run_script("batches", "gone", redis_url=redis_url)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert one_error_line(result.stderr).startswith("pyresque: error: there is no batch 'gone'")
