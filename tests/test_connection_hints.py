"""What the commands and the clients say when Redis wants what the connection lacks: a
password (``requirepass``), or a TLS client certificate (``tls-auth-clients yes``); and the
warning about a password given on the command line, where ``ps`` shows it.

Real servers: one with ``--requirepass``, one speaking TLS only; every command is the
installed program in a subprocess, or click's runner in-process for ``pyresque``.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Optional

import click
import pytest
import redis
from admin_helpers import invoke
from admin_helpers import one_error_line as admin_error_line
from click.testing import CliRunner
from worker_helpers import ROOT, command, worker_env

from pyresqueworker import AsyncClient, Client
from pyresqueworker.cli.admin.cli import main as admin_main
from pyresqueworker.cli.scheduler import main as scheduler_main
from pyresqueworker.cli.work import work
from pyresqueworker.protocol.connection import (
    TLSFiles,
    certificate_required,
    explain_error,
    wants_client_certificate,
)
from pyresqueworker.protocol.urls import PASSWORD_IN_PS
from tests.conftest import RedisServer, tls_redis_server

SECRET = "s3cret-Pa55"
NEEDS_PASSWORD = "needs a password and none was given"
WRONG_PASSWORD = "refused the credentials (wrong user or password)"
NEEDS_CERTIFICATE = "asked for a TLS client certificate and none was given"


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    """A Redis with ``requirepass``."""
    server = RedisServer(("--requirepass", SECRET))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(tls_files: Path) -> Iterator[RedisServer]:
    """A TLS-only Redis that requires client certificates."""
    server = tls_redis_server(tls_files)
    yield server
    server.stop()


def run(program: list[str], *args: str, url: str,
        env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess[str]:
    """``program ARGS`` with ``url`` in REDIS_URL (not on the command line) and no other
    PYRESQUE_ settings. Its connect timeout stays the default 30 s, so an error that waiting
    cannot fix must end it at once, well within the timeout here."""
    return subprocess.run([*program, *args], env=worker_env(url, env), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=25, stdin=subprocess.DEVNULL)


def error_line(result: subprocess.CompletedProcess[str], prog: str) -> str:
    """The one line an error must be: on stderr, alone, no traceback, exit status 1."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


SCHEDULER = [sys.executable, "-m", "pyresqueworker.cli.scheduler"]


# -- a password missing, or wrong -------------------------------------------------------------


def test_pyresque_work_says_the_redis_needs_a_password(locked: RedisServer) -> None:
    line = error_line(run(command(), "--queues", "q", url=locked.url), "pyresque-work")
    assert NEEDS_PASSWORD in line and "redis://:PASSWORD@host" in line
    assert f"redis://127.0.0.1:{locked.port}/0" in line and "HELLO" not in line
    wrong = run(command(), "--queues", "q", url=f"redis://:nope@127.0.0.1:{locked.port}/0")
    line = error_line(wrong, "pyresque-work")
    assert WRONG_PASSWORD in line and NEEDS_PASSWORD not in line and "nope" not in line


def test_pyresque_says_the_redis_needs_a_password(locked: RedisServer) -> None:
    result = invoke(locked.url, "info")
    assert result.exit_code == 1
    assert NEEDS_PASSWORD in admin_error_line(result.stderr)


def test_the_clients_say_the_redis_needs_a_password(locked: RedisServer) -> None:
    for url, says in ((locked.url, NEEDS_PASSWORD),
                      (f"redis://:nope@127.0.0.1:{locked.port}/0", WRONG_PASSWORD)):
        client = Client(url)
        with pytest.raises(redis.exceptions.AuthenticationError) as info:
            client.enqueue_to("q", "Job", 1)
        client.close()
        assert says in str(info.value) and f"127.0.0.1:{locked.port}" in str(info.value)
        assert "HELLO" not in str(info.value) and "nope" not in str(info.value)

        with pytest.raises(redis.exceptions.AuthenticationError, match=re.escape(says)):
            asyncio.run(enqueue_async(url))
    client = Client(f"redis://:{SECRET}@127.0.0.1:{locked.port}/0")
    assert client.enqueue_to("q", "Job", 1)
    client.close()


async def enqueue_async(url: str) -> None:
    async with AsyncClient(url) as client:
        await client.enqueue_to("q", "Job", 1)


# -- a TLS server that wants a client certificate -----------------------------------------------


@pytest.mark.parametrize("processes", ["1", "2"])  # the worker's start, and the supervisor's
def test_pyresque_work_without_a_client_certificate_names_the_flags(
        tls_server: RedisServer, tls_files: Path, processes: str) -> None:
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    # The server's refusal reaches the client in more than one form (its TLS alert, or the
    # socket closed under the first command): a few tries meet them.
    for _ in range(3):
        result = run(command(), "--queues", "q", "--tls-ca", str(tls_files / "ca.crt"),
                     "--processes", processes, url=url)
        line = error_line(result, "pyresque-work")
        assert NEEDS_CERTIFICATE in line and "--tls-cert and --tls-key" in line, line


def test_pyresque_and_the_scheduler_without_a_client_certificate_name_the_flags(
        tls_server: RedisServer, tls_files: Path) -> None:
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    ca = str(tls_files / "ca.crt")
    for _ in range(3):
        result = invoke(url, "--tls-ca", ca, "info")
        assert result.exit_code == 1
        line = admin_error_line(result.stderr)
        assert NEEDS_CERTIFICATE in line and "--tls-cert and --tls-key" in line, line
    line = error_line(run(SCHEDULER, "--redis", url, "--tls-ca", ca, url=url),
                      "pyresque-scheduler")
    assert NEEDS_CERTIFICATE in line
    given = invoke(url, "--tls-ca", ca, "--tls-cert", str(tls_files / "client.crt"),
                   "--tls-key", str(tls_files / "client.key"), "info")
    assert given.exit_code == 0, given.stderr


def test_only_a_tls_connection_without_a_certificate_is_told_to_give_one() -> None:
    closed = redis.exceptions.ConnectionError(
        "Error 8 while writing to socket. EOF occurred in violation of protocol (_ssl.c:2427).")
    reset = redis.exceptions.ConnectionError("Error 104 while reading: Connection reset by peer")
    assert wants_client_certificate(closed, "rediss://h:6380/0")
    assert wants_client_certificate(reset, "rediss://h:6380/0", TLSFiles(ca="ca.crt"))
    assert not wants_client_certificate(closed, "rediss://h:6380/0", TLSFiles(cert="c", key="k"))
    assert not wants_client_certificate(reset, "redis://h:6379/0")
    assert explain_error(reset, "redis://h:6379/0").startswith("cannot reach Redis at ")
    # Only the server's own alert stops redis-py's retries (a reset may be a blip).
    alert = redis.exceptions.ConnectionError(
        "Error while reading from h:6380 : (1, '[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 "
        "alert certificate required (_ssl.c:2580)')")
    assert certificate_required(alert) and not certificate_required(reset)


# -- a password on the command line ------------------------------------------------------------


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_password_on_the_command_line_is_warned_of_once(locked: RedisServer,
                                                           processes: str) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{locked.port}/0"
    args = ("--queues", "q", "--interval", "0", "--processes", processes)  # drain, then exit
    given = run(command(), *args, "--redis", url, url=locked.url)
    assert given.returncode == 0, given.stderr
    assert given.stderr.count(PASSWORD_IN_PS) == 1, given.stderr
    assert SECRET not in given.stderr
    from_env = run(command(), *args, url=locked.url, env={"PYRESQUE_REDIS": url})
    assert from_env.returncode == 0, from_env.stderr
    assert PASSWORD_IN_PS not in from_env.stderr


def test_pyresque_warns_of_a_password_on_its_command_line(locked: RedisServer) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{locked.port}/0"
    program = [sys.executable, "-m", "pyresqueworker.cli.admin.cli"]
    given = run(program, "--redis", url, "queues", url=locked.url)
    assert given.returncode == 0, given.stderr
    assert given.stderr.splitlines() == [f"pyresque: warning: {PASSWORD_IN_PS}"]
    from_env = run(program, "queues", url=url)
    assert from_env.returncode == 0 and from_env.stderr == ""


@pytest.mark.parametrize("cli", [work, admin_main, scheduler_main])
def test_the_redis_flag_says_a_password_there_shows_in_ps(cli: click.Command) -> None:
    shown = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())  # unwrapped
    assert "A password in it shows in ps" in shown and "prefer PYRESQUE_REDIS" in shown
