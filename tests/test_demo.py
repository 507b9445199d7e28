"""The README's first command: the demo on the embedded server, and on a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for name in ("REDIS_URL", "RESQUE_REDIS_URL"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "pyresqueworker.demo", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def check_output(out: str) -> None:
    assert "[high] Greeter: Hello, Ruby and Python!" in out
    assert "[low] Jobs::Archive: archived repo 35 at main" in out
    assert "after_perform hook ran for 35" in out
    assert "AsyncFetch (async def)" in out
    assert "HelloJob (ActiveJob): hey world x42" in out
    assert "FlakyPayment: ValueError: card declined for amount 4200" in out
    assert "NoSuchClass: NameError: uninitialized constant NoSuchClass" in out
    assert "Resque::Helpers::DecodeException" in out
    assert "in `charge'" in out  # the failure's backtrace, innermost frame first


def test_demo_runs_on_the_embedded_server() -> None:
    pytest.importorskip("fakeredis")
    result = run_demo()
    assert result.returncode == 0, result.stderr
    assert "Embedded Redis-protocol server (fakeredis)" in result.stdout
    check_output(result.stdout)
    assert "Stats: processed=" in result.stdout and "failed=3" in result.stdout


def test_demo_uses_a_real_redis_when_given_one(redis_url: str, r: redis.Redis) -> None:
    result = run_demo("--redis", redis_url)
    assert result.returncode == 0, result.stderr
    assert "Embedded" not in result.stdout
    check_output(result.stdout)
    assert r.llen("resque:failed") == 3


def test_demo_says_clearly_when_redis_is_unreachable() -> None:
    result = run_demo("--redis", "redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "cannot reach Redis" in result.stderr
