"""Running ``pyresque-work`` as a real subprocess for behaviour tests.

:func:`start_worker` launches the installed console script with the test app
(``tests/apps/worker_jobs.py``) and a short ``--interval``; the returned :class:`WorkerProc`
waits for the worker's ids to appear in Redis, reads its log and process title, sends it
signals and stops it. Tests get workers through the ``spawn_worker`` fixture (conftest.py),
which kills whatever is still running at teardown.

Everything waits by polling a condition against a deadline: no test depends on a fixed sleep
being long enough, and no test asserts how long something took.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import redis

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
NS = "resque:"
# Ruby's worker_pids regex (spec §8.3) and Ruby's time formats (spec §1.3).
RUBY_PROCLINE = re.compile(r"[r]esque:work|[r]esque:\sStarting|[r]esque-[0-9]")
HEARTBEAT_RE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\Z")
STARTED_RE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\Z")
RUN_AT_RE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
FAILED_AT_RE = re.compile(r"\A\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \S+\Z")
BACKTRACE_LINE_RE = re.compile(r"\A.+:\d+:in `[^']+'\Z")
FAILURE_KEYS = ["failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"]

T = TypeVar("T")


def command() -> list[str]:
    """The installed ``pyresque-work`` script (next to this interpreter when possible)."""
    beside = Path(sys.executable).with_name("pyresque-work")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("pyresque-work")
    if found is None:
        raise RuntimeError("pyresque-work is not installed (pip install -e .)")
    return [found]


def wait_until(
    condition: Callable[[], Optional[T]], what: str, timeout: float = 10.0, every: float = 0.02
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def worker_env(redis_url: str, extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment a test worker runs with: the test app importable, REDIS_URL set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYRESQUE_", "QUEUE"))}
    for name in ("RESQUE_REDIS_URL", "INTERVAL"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS), env.get("PYTHONPATH", "")]))
    env["REDIS_URL"] = redis_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class WorkerProc:
    """One ``pyresque-work`` process (a worker, or a supervisor with ``--processes``)."""

    def __init__(self, args: list[str], env: dict[str, str], redis_url: str) -> None:
        self.args = args
        self.redis = redis.Redis.from_url(redis_url)
        self._dir = tempfile.mkdtemp(prefix="pyresque-worker-")
        self.log_path = Path(self._dir) / "worker.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command() + args, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- observing ------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def title(self, pid: Optional[int] = None) -> str:
        """The process title as ``ps`` shows it (``/proc/<pid>/cmdline``)."""
        try:
            raw = Path(f"/proc/{pid or self.pid}/cmdline").read_bytes()
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()

    def ids(self, pid: Optional[int] = None) -> list[str]:
        """Registered worker ids of ``pid`` (this process by default), slot 0 first."""
        pid = pid or self.pid
        mine = []
        for member in self.redis.smembers(NS + "workers"):
            text = member.decode()
            pid_part = text.split(":")[1] if text.count(":") >= 2 else ""
            if pid_part == str(pid) or pid_part.startswith(f"{pid}-"):
                mine.append(text)
        return sorted(mine, key=lambda w: (len(w.split(":")[1]), w))

    def wait_registered(self, count: int = 1, pid: Optional[int] = None,
                        timeout: float = 15.0) -> list[str]:
        """Wait until ``count`` ids of the process are registered (and it is still alive)."""
        def ready() -> Optional[list[str]]:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            found = self.ids(pid)
            return found if len(found) >= count else None

        return wait_until(ready, f"{count} registered worker id(s)", timeout)

    def wait_title(self, text: str, timeout: float = 10.0) -> str:
        return wait_until(lambda: self.title() if text in self.title() else None,
                          f"process title containing {text!r}", timeout)

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        return wait_until(lambda: self.log() if text in self.log() else None,
                          f"log line containing {text!r}", timeout)

    # -- stopping -------------------------------------------------------------------------

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit within {timeout} s:\n{self.log()}") from None

    def stop(self, sig: int = signal.SIGQUIT, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.send(sig)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL the process (and, for a supervisor, its children) and reap it."""
        for child in children(self.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        try:
            self.kill()
        finally:
            self.redis.close()
            shutil.rmtree(self._dir, ignore_errors=True)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def start_worker(redis_url: str, *args: str, env: Optional[Mapping[str, str]] = None,
                 defaults: bool = True) -> WorkerProc:
    """Start ``pyresque-work <args>``; with ``defaults`` add the test app, Redis, 0.1 s interval."""
    argv = list(args)
    if defaults:
        extra = ["--app", "worker_jobs", "--redis", redis_url]
        if "--interval" not in argv:
            extra += ["--interval", "0.1"]
        argv = extra + argv
    return WorkerProc(argv, worker_env(redis_url, env), redis_url)


# -- reading what the jobs and the worker wrote -----------------------------------------------


def ran(r: redis.Redis) -> list[dict[str, Any]]:
    """The ``test:ran`` records of finished jobs, in order."""
    return [json.loads(line) for line in r.lrange("test:ran", 0, -1)]


def wait_ran(r: redis.Redis, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    return wait_until(lambda: ran(r) if len(ran(r)) >= count else None,
                      f"{count} finished job(s)", timeout)


def wait_started(r: redis.Redis, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    def started() -> Optional[list[dict[str, Any]]]:
        lines = [json.loads(x) for x in r.lrange("test:started", 0, -1)]
        return lines if len(lines) >= count else None

    return wait_until(started, f"{count} started slow job(s)", timeout)


def failures(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange(NS + "failed", 0, -1)]


def wait_failures(r: redis.Redis, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    return wait_until(lambda: failures(r) if len(failures(r)) >= count else None,
                      f"{count} failure entr(y/ies)", timeout)


def keys_mentioning(r: redis.Redis, worker_ids: Iterable[str]) -> dict[str, list[str]]:
    """Everything Redis still holds about these ids: keys, set members, heartbeat fields."""
    wanted = list(worker_ids)
    left: dict[str, list[str]] = {}
    for key in r.keys("*"):
        name = key.decode()
        if any(w in name for w in wanted):
            left.setdefault("keys", []).append(name)
    members = {m.decode() for m in r.smembers(NS + "workers")}
    left["workers"] = sorted(members & set(wanted))
    fields = {f.decode() for f in r.hkeys(NS + "workers:heartbeat")}
    left["heartbeats"] = sorted(fields & set(wanted))
    return {k: v for k, v in left.items() if v}


def count_commands(redis_url: str, seconds: float = 1.0) -> tuple[dict[str, int], int]:
    """Commands clients send over ``seconds``, via MONITOR, and what Redis ran in all.

    Returns ``({command: count} sent by clients, total commands executed including those run
    inside Lua scripts, from INFO commandstats)``.
    """
    mark = "pyresque-test-count-end"
    watcher = redis.Redis.from_url(redis_url, socket_timeout=seconds + 10)
    # An idle worker may send nothing for seconds: a marker command ends the watch on time.
    ender = threading.Timer(seconds, lambda: redis.Redis.from_url(redis_url).echo(mark))
    sent: collections.Counter[str] = collections.Counter()
    try:
        before = _commandstats(watcher)
        with watcher.monitor() as monitor:
            ender.start()
            while True:
                seen = monitor.next_command()
                if mark in str(seen["command"]):
                    break
                if seen.get("client_type") != "lua":
                    sent[str(seen["command"]).split(" ", 1)[0].upper()] += 1
        after = _commandstats(watcher)
    finally:
        ender.cancel()
        watcher.close()
    mine = ("info", "monitor", "echo")  # this function's own calls
    total = sum(v for k, v in after.items() if not k.startswith(mine)) - sum(
        v for k, v in before.items() if not k.startswith(mine))
    return dict(sent), total


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def server_time(r: redis.Redis) -> int:
    return int(r.time()[0])
