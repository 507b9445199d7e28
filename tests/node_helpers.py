"""Driving real node-resque (npm, pinned in tests/node/package-lock.json) from the tests.

``scripts/test`` installs it with ``npm ci`` into tests/node/node_modules. The scripts there
take the Redis port and the namespace as their first arguments and talk to 127.0.0.1 only:

* ``queue.js``: node-resque's ``Queue`` API, one call per step (:func:`node_queue`);
* ``worker.js`` and ``scheduler.js``: a ``Worker`` or a ``Scheduler`` until SIGTERM, printing
  their events as JSON lines (:class:`NodeProc`, started by the ``spawn_node`` fixture).

Node jobs report as ``tests/apps/worker_jobs.py`` does (``test:ran``, ``test:started``), with
``"runtime": "node"``, so a test reads Python and Node runs alike.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import redis
from worker_helpers import wait_until

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_RESQUE = NODE_DIR / "node_modules" / "node-resque"
NS = "resque"
# Node's JSON numbers are doubles: integers beyond 2**53 - 1 cannot cross exactly.
MAX_SAFE_INTEGER = 2**53 - 1

# Values that must cross between Python and Node unchanged, both ways: unicode (accents, CJK,
# an astral emoji, the JavaScript line separators, a NUL), the largest exact integers, floats
# with fractions and exponents, nested objects and arrays, empty ones, null and booleans.
ROUND_TRIP_ARGS: list[Any] = [
    "é ü ß 漢字 🎉 \u2028\u2029 tab\t nul\u0000 \"quoted\" back\\slash </script>",
    MAX_SAFE_INTEGER,
    -MAX_SAFE_INTEGER,
    0,
    0.1,
    -2.5e-08,
    3.141592653589793,
    6.02214076e23,
    1.7976931348623157e308,
    5e-324,
    {"nested": {"list": [1, "two", None, True, False, {"deep": [[]]}]}, "ключ": {}, "": None},
    [],
    None,
    True,
]


def node_binary() -> Optional[str]:
    """``node``, if it and the pinned node-resque are installed."""
    found = shutil.which("node")
    return found if found and (NODE_RESQUE / "package.json").exists() else None


def installed_version() -> str:
    data = json.loads((NODE_RESQUE / "package.json").read_text(encoding="utf-8"))
    return str(data["version"])


def _port(redis_url: str) -> str:
    return redis_url.rsplit(":", 1)[1].split("/", 1)[0]


def node_queue(node: str, redis_url: str, *steps: dict[str, Any],
               namespace: str = NS) -> tuple[list[Any], list[str]]:
    """Run ``steps`` through node-resque's ``Queue``; returns (their results, its errors)."""
    proc = subprocess.run(
        [node, str(NODE_DIR / "queue.js"), _port(redis_url), namespace, json.dumps(steps)],
        capture_output=True, text=True, encoding="utf-8", timeout=60, cwd=str(NODE_DIR))
    if proc.returncode != 0:
        raise AssertionError(f"queue.js {steps}: exit {proc.returncode}\n{proc.stderr}")
    out = json.loads(proc.stdout)
    return out["results"], out["errors"]


def node_call(node: str, redis_url: str, op: str, **fields: Any) -> Any:
    """One ``Queue`` call (``op`` with its fields); returns its result."""
    results, _ = node_queue(node, redis_url, {"op": op, **fields})
    return results[0]


class NodeProc:
    """A running ``worker.js`` or ``scheduler.js``; its events are read as they come."""

    def __init__(self, node: str, script: str, redis_url: str, *args: str,
                 namespace: str = NS) -> None:
        self._dir = tempfile.mkdtemp(prefix="pyresque-node-")
        self.stderr_path = Path(self._dir) / "stderr"
        self.events: list[dict[str, Any]] = []
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [node, str(NODE_DIR / script), _port(redis_url), namespace, *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                cwd=str(NODE_DIR), text=True, encoding="utf-8")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e["event"] == event]

    def wait_event(self, event: str, count: int = 1,
                   timeout: float = 15.0) -> list[dict[str, Any]]:
        def seen() -> Optional[list[dict[str, Any]]]:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.stderr()}")
            found = self.named(event)
            return found if len(found) >= count else None

        return wait_until(seen, f"{count} node-resque {event!r} event(s)", timeout)

    def ready(self) -> dict[str, Any]:
        """The ``ready`` event: for a worker its ``name``, ``id`` (registered) and ``pid``."""
        return self.wait_event("ready")[0]

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (node-resque's clean end: it unregisters) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        try:
            self.kill()
        finally:
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            shutil.rmtree(self._dir, ignore_errors=True)


class RubyWorker:
    """``ruby_worker.rb``: Resque's worker loop in Redis, on resque_compat.rb, until SIGTERM."""

    def __init__(self, ruby: str, redis_url: str, queues: str) -> None:
        from conftest import RUBY_CLIENT

        env = {**os.environ, "REDIS_URL": redis_url, "RESQUE_NAMESPACE": NS}
        self.proc = subprocess.Popen(
            [ruby, str(NODE_DIR / "ruby_worker.rb"), str(RUBY_CLIENT / "resque_compat.rb"),
             queues], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8")
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"ruby_worker.rb exited: {self.proc.communicate()[1]}")
        self.id: str = json.loads(line)["id"]

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc.communicate()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def wait_due(r: redis.Redis) -> None:
    """Until every delayed timestamp is due: our scheduler then moves them at its start (its
    next pass would be 5 s later)."""
    schedule = NS + ":delayed_queue_schedule"
    wait_until(lambda: r.zcount(schedule, "-inf", int(time.time())) == r.zcard(schedule),
               "the delayed jobs to be due")


def node_runs(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("runtime") == "node"]


def python_runs(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("runtime") != "node"]


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
