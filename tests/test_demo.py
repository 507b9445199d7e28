"""The README's first command: the demo on the embedded server, and on a real Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
import redis

from pyresqueworker.cli.demo import DEMO_NAMESPACE


def run_demo(*args: str, path: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    """Run ``pyresque-demo`` with ``args``; ``path`` replaces PATH (where ``ruby`` is found)."""
    env = dict(os.environ)
    for name in ("REDIS_URL", "RESQUE_REDIS_URL"):
        env.pop(name, None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "pyresqueworker.cli.demo", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def ruby_and_gem() -> bool:
    """Whether ``ruby`` is on PATH and can load the redis gem (what the Ruby enqueue needs)."""
    ruby = shutil.which("ruby")
    return ruby is not None and subprocess.run([ruby, "-e", 'require "redis"'],
                                               capture_output=True).returncode == 0


def check_output_without_ruby(out: str) -> None:
    """The Python side of the demo ran in full."""
    assert "[high] Greeter: Hello, Ruby and Python!" in out
    assert "Greeter: Hola, from Ruby!" not in out
    assert "failed=3" in out


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
    assert r.llen(DEMO_NAMESPACE + "failed") == 3


def test_two_demo_runs_show_one_run_and_leave_resque_alone(redis_url: str,
                                                           r: redis.Redis) -> None:
    r.rpush("resque:queue:real", b'{"class":"Real","args":[]}')  # someone's real Resque data
    first = run_demo("--redis", redis_url)
    second = run_demo("--redis", redis_url)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    for result in (first, second):
        assert f"Using namespace '{DEMO_NAMESPACE}'" in result.stdout
        assert result.stdout.count("Greeter: Hello, Ruby and Python!") == 1
        assert result.stdout.count("FlakyPayment: ValueError") == 1
        assert "failed=3 pending=0" in result.stdout
    processed = first.stdout.split("Stats: processed=")[1].split()[0]
    assert f"Stats: processed={processed} failed=3" in second.stdout  # not twice as many
    keys = {key.decode() for key in r.keys("*")}
    assert {key for key in keys if not key.startswith(DEMO_NAMESPACE)} == {"resque:queue:real"}
    assert r.llen(DEMO_NAMESPACE + "failed") == 3


def test_demo_refuses_to_empty_a_namespace_it_did_not_write(redis_url: str,
                                                            r: redis.Redis) -> None:
    r.rpush("resque:queue:real", b'{"class":"Real","args":[]}')
    result = run_demo("--redis", redis_url, "--namespace", "resque:")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "--namespace of its own" in result.stderr
    assert r.keys("*") == [b"resque:queue:real"]
    # A namespace of one's own choosing is emptied on the next run like the default one.
    assert run_demo("--redis", redis_url, "--namespace", "mine").returncode == 0
    assert run_demo("--redis", redis_url, "--namespace", "mine").returncode == 0
    assert r.llen("mine:failed") == 3


def test_demo_help_says_which_namespace_it_empties() -> None:
    result = run_demo("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert f"namespace '{DEMO_NAMESPACE}'" in text and "deletes that namespace's keys" in text


@pytest.mark.skipif(not ruby_and_gem(), reason="needs ruby and its redis gem")
def test_demo_enqueues_with_ruby_when_ruby_and_the_gem_are_there(redis_url: str) -> None:
    result = run_demo("--redis", redis_url)
    assert result.returncode == 0, result.stderr
    assert "Ruby enqueued 1 job" in result.stdout
    assert "[high] Greeter: Hola, from Ruby!" in result.stdout


def test_demo_says_ruby_is_missing(redis_url: str, tmp_path: Path) -> None:
    result = run_demo("--redis", redis_url, path=str(tmp_path))  # a PATH without ruby
    assert result.returncode == 0, result.stderr
    assert "Ruby enqueue skipped: no `ruby` on PATH" in result.stdout
    check_output_without_ruby(result.stdout)


def test_demo_says_the_redis_gem_is_missing(redis_url: str, tmp_path: Path) -> None:
    # A ruby that fails the way a real one does when `require "redis"` finds no gem.
    ruby = tmp_path / "ruby"
    ruby.write_text("#!/bin/sh\necho \"$1: cannot load such file -- redis (LoadError)\" >&2\n"
                    "exit 1\n")
    ruby.chmod(0o755)
    result = run_demo("--redis", redis_url, path=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    assert f"{ruby} is there but its redis gem is not" in result.stdout
    check_output_without_ruby(result.stdout)


def test_demo_says_clearly_when_redis_is_unreachable() -> None:
    result = run_demo("--redis", "redis://127.0.0.1:1/0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "cannot reach Redis" in result.stderr
