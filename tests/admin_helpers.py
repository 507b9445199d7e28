"""Running the ``pyresque`` admin CLI in tests, and the Redis data its tests start from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import redis
from click.testing import CliRunner, Result
from conftest import golden_state

from pyresqueworker.cli.admin.cli import main
from pyresqueworker.protocol import wire

ROOT = Path(__file__).resolve().parent.parent
FAILED = "resque:failed"
RUBY_WORKER = "vm:30579:high,low"
# Variables that would point the CLI somewhere else than the test's Redis.
_CONNECTION_ENV = ("PYRESQUE_REDIS", "RESQUE_REDIS_URL", "REDIS_URL", "PYRESQUE_NAMESPACE",
                   "PYRESQUE_TLS_CA", "PYRESQUE_TLS_CERT", "PYRESQUE_TLS_KEY")


def invoke(redis_url: Optional[str], *args: str, input: Optional[str] = None,
           env: Optional[Mapping[str, Optional[str]]] = None) -> Result:
    """``pyresque [--redis URL] ARGS`` in-process (click's CliRunner), stdout and stderr apart."""
    environment: dict[str, Optional[str]] = dict.fromkeys(_CONNECTION_ENV)
    environment.update(env or {})
    argv = (["--redis", redis_url] if redis_url else []) + list(args)
    return CliRunner(env=environment).invoke(main, argv, input=input)


def invoke_json(redis_url: str, *args: str) -> Any:
    result = invoke(redis_url, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def run_script(*args: str, redis_url: Optional[str] = None,
               module: bool = False) -> subprocess.CompletedProcess[str]:
    """The installed ``pyresque`` script (or ``python -m pyresqueworker.cli.admin.cli``)."""
    env = {k: v for k, v in os.environ.items() if k not in _CONNECTION_ENV}
    if redis_url:
        env["REDIS_URL"] = redis_url
    beside = Path(sys.executable).with_name("pyresque")
    command = ([sys.executable, "-m", "pyresqueworker.cli.admin.cli"] if module
               else [str(beside) if beside.exists() else "pyresque"])
    return subprocess.run(command + list(args), env=env, cwd=str(ROOT), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def one_error_line(stderr: str) -> str:
    """The single ``pyresque: error: ...`` line an error must produce."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pyresque: error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


def golden_failures() -> list[str]:
    """The two failure entries Ruby Resque wrote (RubyBoom, then NoSuchClass)."""
    return list(golden_state()[FAILED]["value"])


def failure(queue: str, klass: str, args: Any, **extra: Any) -> str:
    """A failure entry with Resque's keys."""
    fields = {"failed_at": "2024/01/15 09:50:00 UTC", "payload": {"class": klass, "args": args},
              "exception": "RuntimeError", "error": "boom", "backtrace": [],
              "worker": "web1:1:" + queue, "queue": queue}
    fields.update(extra)
    return wire.dumps(fields)


def server_now(r: redis.Redis) -> int:
    """Redis server time, whole seconds (what the CLI measures ages against)."""
    return int(r.time()[0])
