"""The README's first command: the demo on the embedded server, and on a real Redis."""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
import redis

from pyresqueworker.cli.demo import DEMO_NAMESPACE


def clean_env(path: Optional[str] = None) -> dict[str, str]:
    """The environment without Redis settings; ``path`` replaces PATH (where ``ruby`` is)."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("REDIS_URL", "RESQUE_REDIS_URL", "PYRESQUE_REDIS",
                           "PYRESQUE_NAMESPACE")}
    if path is not None:
        env["PATH"] = path
    return env


def run_demo(*args: str, path: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    """Run ``pyresque-demo`` with ``args``; ``path`` replaces PATH (where ``ruby`` is found)."""
    return subprocess.run([sys.executable, "-m", "pyresqueworker.cli.demo", *args],
                          env=clean_env(path), capture_output=True, text=True, timeout=120)


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


# -- what the demo prints to try by hand ----------------------------------------------------------


class Lines:
    """A running process's stdout, line by line, each awaited with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no line like {pattern!r} in:\n" + "\n".join(self.seen))
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found


def test_serve_prints_each_job_it_runs_as_it_runs() -> None:
    pytest.importorskip("fakeredis")
    process = subprocess.Popen([sys.executable, "-m", "pyresqueworker.cli.demo", "--serve"],
                               env=clean_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(process)
        url = lines.wait_for(r"Embedded Redis-protocol server \(fakeredis\) on (\S+)").group(1)
        lines.wait_for(r"Worker keeps running; try: redis-cli .* RPUSH resque:queue:high ")
        # What the suggested redis-cli command does: a raw RPUSH, no client of ours.
        pushed = redis.Redis.from_url(url)
        pushed.rpush("resque:queue:high", '{"class":"Greeter","args":["you"]}',
                     '{"class":"Nope","args":[7]}', "\x1b[2J not json")
        lines.wait_for(r'^  \[high\] Greeter\("you"\) -> success \(\d+\.\dms\)$')
        lines.wait_for(r"^  \[high\] Nope\(7\) -> failure: NameError: uninitialized constant "
                       r"Nope \(")
        bad = lines.wait_for(r"^  \[high\] \(not a job\) -> failure: ").string
        assert "\x1b" not in bad  # what came from Redis reaches the terminal escaped
        pushed.close()
        process.send_signal(signal.SIGINT)  # Ctrl-C
        lines.wait_for(r"^  \[high\] Greeter: Hello, you!$")  # the summary, as before
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_printed_worker_command_runs_the_demo_jobs(redis_url: str, r: redis.Redis,
                                                       tmp_path: Path) -> None:
    result = run_demo("--redis", redis_url)
    assert result.returncode == 0, result.stderr
    [command] = [line[len("Running: "):] for line in result.stdout.splitlines()
                 if line.startswith("Running: ")]
    argv = shlex.split(command)
    assert argv[0] == "pyresque-work" and "--exit-on-complete" in argv
    beside = Path(sys.executable).with_name("pyresque-work")  # this environment's script
    argv[0] = str(beside) if beside.exists() else argv[0]
    r.rpush(DEMO_NAMESPACE + "queue:high", '{"class":"Greeter","args":["you"]}')
    r.rpush(DEMO_NAMESPACE + "queue:low", '{"class":"Jobs::Archive","args":[7,"dev"]}')
    processed = int(r.get(DEMO_NAMESPACE + "stat:processed") or 0)
    # Pasted into a shell elsewhere: no checkout on the path, no Redis in the environment.
    worker = subprocess.run(argv, env=clean_env(), cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert worker.returncode == 0, worker.stderr
    assert "[high] Greeter: Hello, you!" in worker.stdout
    assert "[low] Jobs::Archive: archived repo 7 at dev" in worker.stdout
    assert int(r.get(DEMO_NAMESPACE + "stat:processed") or 0) == processed + 2
    assert r.llen(DEMO_NAMESPACE + "failed") == 3  # the demo's own, no new one
    assert r.llen(DEMO_NAMESPACE + "queue:high") == r.llen(DEMO_NAMESPACE + "queue:low") == 0
