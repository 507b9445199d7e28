"""The ``pyresque-work`` command line: one clear line per error, exit codes, environment,
and credentials kept out of every message."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
import redis
from worker_helpers import ROOT, WorkerProc, command, wait_ran, worker_env

from pyresqueworker import __version__

Spawn = Callable[..., WorkerProc]
HOST = socket.gethostname()
SECRET = "s3cret-Pa55"


def run_cli(*args: str, env: Optional[dict[str, str]] = None,
            redis_url: str = "redis://127.0.0.1:1/0") -> subprocess.CompletedProcess[str]:
    return subprocess.run(command() + list(args), env=worker_env(redis_url, env), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pyresque-work: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize(("args", "mentions"), [
    (["--queues", "high=x"], "'x'"),
    (["--queues", "high=0"], "at least 1"),
    (["--queues", ",,"], "queue"),
    (["--queues", "a:b"], "':'"),
    (["--queues", "a b"], "separate queues with ','"),
    (["--queues", "high", "--concurrency", "0"], "--concurrency"),
    (["--queues", "high", "--interval", "-1"], "--interval"),
    (["--queues", "high", "--fetch", "nope"], "--fetch"),
    (["--queues", "high", "--reply-spin-us", "20000"], "--reply-spin-us"),
    (["--queues", "high", "--heartbeat-interval", "5", "--prune-after", "4"], "--prune-after"),
    (["--queues", "high", "--no-such-flag"], "--no-such-flag"),
    ([], "--queues"),
])
def test_a_bad_flag_prints_one_line_and_exits_2(args: list[str], mentions: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert mentions in one_error_line(result)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_unreachable_redis_prints_one_line_and_exits_1(processes: str) -> None:
    result = run_cli("--queues", "q", "--processes", processes, "--connect-timeout", "0",
                     "--redis", f"redis://:{SECRET}@127.0.0.1:1/0")
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "127.0.0.1:1" in line
    assert SECRET not in result.stderr + result.stdout


def test_a_bad_value_from_the_environment_names_the_variable() -> None:
    result = run_cli("--queues", "q", env={"PYRESQUE_CONCURRENCY": "abc"})
    assert result.returncode == 2, result.stderr
    assert "PYRESQUE_CONCURRENCY='abc'" in one_error_line(result)
    flag = run_cli("--queues", "q", "--concurrency", "abc", env={"PYRESQUE_CONCURRENCY": "2"})
    assert "environment" not in one_error_line(flag)  # the flag's own value was the bad one


def test_a_malformed_url_never_shows_its_password() -> None:
    result = run_cli("--queues", "q", "--redis", f"redis://user:{SECRET}@127.0.0.1:notaport/0")
    assert result.returncode == 2, result.stderr
    one_error_line(result)
    assert SECRET not in result.stderr + result.stdout


def test_a_missing_app_module_is_one_line_and_exit_1() -> None:
    result = run_cli("--queues", "q", "--app", "no_such_module_here")
    assert result.returncode == 1, result.stderr
    assert "no_such_module_here" in one_error_line(result)


def test_an_app_that_fails_to_import_is_one_line_naming_where(tmp_path: Path) -> None:
    app = tmp_path / "broken_app.py"
    app.write_text("import os\n\nraise RuntimeError('no config for ' + 'prod')\n")
    result = run_cli("--queues", "q", "--app", str(app))
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert f"{app}:3: RuntimeError: no config for prod" in line


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


@pytest.fixture
def acl_user(r: redis.Redis) -> Iterator[str]:
    """A password-protected ACL user on the test Redis, removed afterwards."""
    r.execute_command("ACL", "SETUSER", "pyresque-cli", "on", f">{SECRET}", "~*", "&*", "+@all")
    try:
        yield "pyresque-cli"
    finally:
        r.execute_command("ACL", "DELUSER", "pyresque-cli")


def test_a_password_in_the_url_never_reaches_the_log(
    r: redis.Redis, redis_url: str, spawn_worker: Spawn, acl_user: str
) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    url = f"redis://{acl_user}:{SECRET}@127.0.0.1:{port}/0"
    worker = spawn_worker("--queues", "q", "--redis", url, "--log-level", "debug",
                          "--log-format", "json", "--concurrency", "2", defaults=False,
                          env={"PYRESQUE_APP": "worker_jobs", "REDIS_URL": url})
    worker.wait_registered(2)
    r.rpush("resque:queue:q", '{"class":"Record","args":[1]}', '{"class":"Boom","args":[]}')
    wait_ran(r, 1)
    assert worker.stop(signal.SIGTERM) == 0
    log = worker.log()
    assert "worker started" in log and f"127.0.0.1:{port}" in log
    assert SECRET not in log
    assert all(SECRET.encode() not in entry for entry in r.lrange("resque:failed", 0, -1))


@pytest.mark.parametrize(("env", "queues"), [
    ({"PYRESQUE_QUEUES": "high,low"}, "high,low"),
    ({"QUEUES": "a,b"}, "a,b"),
    ({"QUEUE": "*"}, "*"),
    ({"PYRESQUE_QUEUES": "first", "QUEUES": "second"}, "first"),
])
def test_queues_and_redis_url_from_the_environment(
    r: redis.Redis, redis_url: str, spawn_worker: Spawn, env: dict[str, str], queues: str
) -> None:
    # No --queues and no --redis: REDIS_URL (set by worker_env) and the variables decide.
    worker = spawn_worker("--app", "worker_jobs", "--interval", "0.1", defaults=False, env=env)
    [worker_id] = worker.wait_registered()
    assert worker_id == f"{HOST}:{worker.pid}:{queues}"
    assert worker.stop() == 0


def test_a_database_number_out_of_range_is_one_line(redis_url: str) -> None:
    result = run_cli("--queues", "q", "--redis", redis_url.rsplit("/", 1)[0] + "/99",
                     redis_url=redis_url)
    assert result.returncode == 1, result.stderr
    assert "no such database" in one_error_line(result)


def test_a_port_that_is_not_redis_is_one_line() -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_like_a_web_server() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"<html>not redis</html>\r\n")
            conn.close()

    threading.Thread(target=answer_like_a_web_server, daemon=True).start()
    try:
        url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
        result = run_cli("--queues", "q", "--connect-timeout", "0", "--redis", url)
    finally:
        server.close()
    assert result.returncode == 1, result.stderr
    assert "does not answer like a Redis server" in one_error_line(result)


def test_wrong_credentials_and_missing_permissions_are_one_line(
    redis_url: str, r: redis.Redis
) -> None:
    host = redis_url.split("//", 1)[1]
    r.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "+@read", "+ping",
                      "+info", "+client", "-time")
    try:
        denied = run_cli("--queues", "q", "--redis", f"redis://limited:pw@{host}",
                         redis_url=redis_url)
        assert denied.returncode == 1, denied.stderr
        line = one_error_line(denied)
        assert "refused a command to this ACL user" in line and "+@write" in line
        assert "pw@" not in line
        wrong = run_cli("--queues", "q", "--redis", f"redis://limited:nope@{host}",
                        redis_url=redis_url)
        assert "refused the credentials (wrong user or password)" in one_error_line(wrong)
        assert "nope" not in wrong.stderr
    finally:
        r.execute_command("ACL", "DELUSER", "limited")
