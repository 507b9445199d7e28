"""``pyresque schedules ...``, ``pyresque history`` and ``pyresque web`` on a real Redis."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Optional

import pytest
import redis
from admin_helpers import ROOT, invoke, invoke_json, one_error_line, server_now
from conftest import free_port
from worker_helpers import wait_until

from pyresqueworker.protocol import wire
from pyresqueworker.worker.periodic import ScheduleStore

SCHEDULE_KEYS = ["name", "cron", "class", "args", "queue", "description", "enabled", "source",
                 "last_enqueued_at", "next_run"]


# -- schedules --------------------------------------------------------------------------------


def test_schedules_add_list_disable_enable_delete(redis_url: str, r: redis.Redis) -> None:
    added = invoke_json(redis_url, "schedules", "add", "nightly", "--cron", "0 3 * * *",
                        "--class", "Report", "--args", '[1, {"full": true}]', "--queue",
                        "reports", "--description", "the nightly report")
    assert list(added) == SCHEDULE_KEYS
    assert added["next_run"].endswith("T03:00:00Z")
    stored = ScheduleStore(r, wire.Keys()).get("nightly")
    assert stored is not None
    assert (stored.cron, stored.class_name, stored.args, stored.queue, stored.enabled) == (
        "0 3 * * *", "Report", [1, {"full": True}], "reports", True)
    [row] = invoke_json(redis_url, "schedules", "list")
    assert row == {**added, "next_run": row["next_run"]}
    assert (row["source"], row["description"]) == ("redis", "the nightly report")
    lines = invoke(redis_url, "schedules", "list").stdout.splitlines()
    assert lines[0].split() == ["NAME", "CRON", "CLASS", "ARGS", "QUEUE", "ENABLED", "SOURCE",
                                "NEXT", "LAST"]
    assert re.match(r'^nightly\s+0 3 \* \* \*\s+Report\s+\[1,\{"full":true\}\]\s+reports\s+yes'
                    r"\s+redis\s+in \S+\s+-$", lines[1]), lines[1]

    assert invoke(redis_url, "schedules", "disable", "nightly").stdout == \
        "disabled schedule nightly\n"
    [row] = invoke_json(redis_url, "schedules", "list")
    assert (row["enabled"], row["next_run"]) == (False, None)
    assert invoke_json(redis_url, "schedules", "enable", "nightly") == {
        "name": "nightly", "action": "enable"}
    assert invoke_json(redis_url, "schedules", "list")[0]["enabled"] is True
    assert invoke(redis_url, "schedules", "delete", "nightly").stdout == \
        "deleted schedule nightly\n"
    assert invoke_json(redis_url, "schedules", "list") == []
    assert invoke(redis_url, "schedules", "list").stdout == "no schedules\n"


def test_schedules_add_disabled_and_replace(redis_url: str) -> None:
    result = invoke(redis_url, "schedules", "add", "tick", "--cron", "*/5 * * * *", "--class",
                    "Tick", "--queue", "q", "--disabled")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "added schedule tick: Tick() on q at '*/5 * * * *'; next run never " \
                            "(disabled)\n"
    result = invoke(redis_url, "schedules", "add", "tick", "--cron", "* * * * *", "--class",
                    "Tick", "--queue", "q")
    assert result.exit_code == 2 and "exists" in one_error_line(result.stderr)
    assert invoke_json(redis_url, "schedules", "add", "tick", "--cron", "* * * * *", "--class",
                       "Tick", "--queue", "q", "--replace")["cron"] == "* * * * *"


@pytest.mark.parametrize(("args", "mentions"), [
    (["--cron", "not a cron"], "cron"),
    (["--cron", "* * * * *", "--args", "{"], "--args"),
    (["--cron", "* * * * *", "--args", '{"a": 1}'], "JSON array"),
])
def test_schedules_add_refuses_bad_input(redis_url: str, r: redis.Redis, args: list[str],
                                         mentions: str) -> None:
    result = invoke(redis_url, "schedules", "add", "bad", "--class", "C", "--queue", "q", *args)
    assert result.exit_code == 2
    assert mentions in one_error_line(result.stderr)
    assert ScheduleStore(r, wire.Keys()).list() == []


@pytest.mark.parametrize("action", ["enable", "disable", "delete"])
def test_schedules_unknown_name(redis_url: str, action: str) -> None:
    result = invoke(redis_url, "schedules", action, "ghost")
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "pyresque: error: no schedule named 'ghost'"


# -- history ----------------------------------------------------------------------------------


def record(r: redis.Redis, finished_at: float, class_name: str, outcome: str = "success",
           job_id: Optional[str] = None, error: Optional[str] = None) -> dict[str, Any]:
    """A history record as workers write it (see pyresqueworker.client.history)."""
    keys = wire.Keys()
    data = {"finished_at": finished_at, "outcome": outcome, "duration_ms": 12.5,
            "queue": "q", "class": class_name, "worker": "h:1:q", "job_id": job_id,
            "error": error, "payload_bytes": 30, "payload": {"class": class_name, "args": [1]}}
    text = wire.dumps(data)
    r.zadd(keys.history, {text: finished_at})
    r.zadd(keys.history_class(class_name), {text: finished_at})
    if job_id:
        r.lpush(keys.history_id(job_id), text)
    return data


def test_history_newest_first_by_class_and_by_id(redis_url: str, r: redis.Redis) -> None:
    now = server_now(r)
    record(r, now - 300, "Archive", job_id="j-1", outcome="failure",
           error="RuntimeError: boom\nsecond line")
    record(r, now - 200, "Mail")
    record(r, now - 100, "Archive", job_id="j-1")
    rows = invoke_json(redis_url, "history")
    assert [(row["class"], row["finished_at"]) for row in rows] == [
        ("Archive", now - 100), ("Mail", now - 200), ("Archive", now - 300)]
    assert list(rows[0]) == ["finished_at", "outcome", "duration_ms", "queue", "class",
                             "worker", "job_id", "error", "args", "payload_bytes"]
    assert [row["finished_at"] for row in invoke_json(redis_url, "history", "--class",
                                                      "Archive")] == [now - 100, now - 300]
    assert [row["outcome"] for row in invoke_json(redis_url, "history", "--id", "j-1")] == [
        "success", "failure"]
    assert len(invoke_json(redis_url, "history", "--id", "j-1", "--limit", "1")) == 1
    assert invoke_json(redis_url, "history", "--id", "j-1", "--class", "Mail") == []
    assert len(invoke_json(redis_url, "history", "--limit", "2")) == 2
    lines = invoke(redis_url, "history").stdout.splitlines()
    assert lines[0].split() == ["FINISHED", "OUTCOME", "DURATION", "QUEUE", "CLASS", "JOB",
                                "ID", "WORKER", "ERROR"]
    assert re.match(r"^1m ago\s+success\s+12ms\s+q\s+Archive\s+j-1\s+h:1:q$", lines[1]), lines
    assert re.search(r"^5m ago\s+failure\s+12ms\s+q\s+Archive\s+j-1\s+h:1:q\s+"
                     r"RuntimeError: boom$", lines[3]), lines[3]  # the error's first line


def test_history_when_nothing_is_recorded(redis_url: str, r: redis.Redis) -> None:
    assert "run workers with --history" in invoke(redis_url, "history").stdout
    record(r, server_now(r), "Mail")
    assert invoke(redis_url, "history", "--class", "Other").stdout == "no matching history\n"


# -- web --------------------------------------------------------------------------------------


@pytest.fixture
def web_process(redis_url: str) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: Optional[dict[str, str]] = None) -> tuple[subprocess.Popen[str],
                                                                          int]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyresqueworker.cli.admin.cli", "--redis", redis_url, "web",
             "--port", str(port), *args], env={**os.environ, **(env or {})}, cwd=str(ROOT),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        return proc, port

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def get(port: int, auth: Optional[str] = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_web_serves_the_dashboard_with_basic_auth(web_process: Any) -> None:
    proc, port = web_process("--username", "admin", "--password-env", "DASH_PW",
                             env={"DASH_PW": "pw-123"})
    wait_until(lambda: get(port) == 401, "the dashboard to answer")
    assert get(port, "admin:pw-123") == 200
    assert get(port, "admin:wrong") == 401
    proc.send_signal(2)  # Ctrl-C
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"dashboard on http://127.0.0.1:{port}/" in err and "pw-123" not in err + out


@pytest.mark.parametrize(("args", "env", "mentions"), [
    (["--username", "admin"], {}, "go together"),
    (["--password-env", "DASH_PW"], {}, "go together"),
    (["--username", "admin", "--password-env", "NOT_SET_ANYWHERE"], {}, "NOT_SET_ANYWHERE"),
])
def test_web_refuses_half_an_auth_setup(redis_url: str, args: list[str], env: dict[str, str],
                                        mentions: str) -> None:
    result = invoke(redis_url, "web", *args, env={"NOT_SET_ANYWHERE": None, **env})
    assert result.exit_code == 2
    assert mentions in one_error_line(result.stderr)


def test_web_reports_a_port_in_use_and_an_unreachable_redis(redis_url: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(redis_url, "web", "--port", str(port))
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(result.stderr)
    result = invoke("redis://127.0.0.1:1/0", "web", "--port", str(port))
    assert result.exit_code == 1 and "cannot reach Redis" in one_error_line(result.stderr)


def test_history_json_is_the_records_dict(redis_url: str, r: redis.Redis) -> None:
    data = record(r, 1_700_000_000.25, "Mail", job_id="m-1")
    [row] = invoke_json(redis_url, "history")
    assert row == {"finished_at": data["finished_at"], "outcome": "success",
                   "duration_ms": 12.5, "queue": "q", "class": "Mail", "worker": "h:1:q",
                   "job_id": "m-1", "error": None, "args": [1], "payload_bytes": 30}
    assert json.dumps(row)  # plain JSON types only
