#!/usr/bin/env python3
"""Benchmark pyresqueworker side by side with RQ, dramatiq and arq on a private redis-server.

    python scripts/bench.py                 # full: 20,000-job drains, every workload 3 times
    python scripts/bench.py --quick         # seconds: 2,000 jobs, 1 run (the CI smoke test)
    python scripts/bench.py --only drain,latency --peers rq --runs 5 --json out.json

Workloads: drain (queued no-op jobs), floor (a bare redis-py loop doing our per-job Redis
work), enqueue (single calls and bulk), io (50 ms sleeps at concurrency 100) and latency (one
job at a time into an idle worker). Each value is the median of ``--runs`` runs with min-max.
Worker runs also report, per job, Redis commands and round trips (``INFO`` deltas; a round trip
is one server read event), worker and Redis CPU time (start-up subtracted), and the worker's
peak RSS. Peers come from the optional ``[bench]`` extra and are skipped, with a note, when
missing: nothing is installed here.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Callable, Optional

import hiredis
import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # bench_jobs, and this checkout's package first

import bench_jobs as bj  # noqa: E402

from pyresqueworker import wire  # noqa: E402
from pyresqueworker.connection import connect  # noqa: E402
from pyresqueworker.fetch import NO_FINISH, SUCCESS, Claimer  # noqa: E402

__all__ = ["Row", "Settings", "System", "main", "run"]

WORKLOADS = ("floor", "drain", "enqueue", "io", "latency")
Metrics = dict[str, float]


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run."""

    runs: int = 3
    jobs: int = 20_000
    io_jobs: int = 2_000
    io_sleep: float = 0.05
    io_concurrency: int = 100
    latency_samples: int = 200
    peers: tuple[str, ...] = bj.PEERS
    only: tuple[str, ...] = WORKLOADS


@dataclass(frozen=True)
class System:
    """One framework in one configuration (``None``: the framework's default)."""

    label: str
    framework: str
    concurrency: Optional[int] = None
    processes: int = 1
    poll: Optional[float] = None
    # Latency gaps are 10 ms + uniform [0, idle_cycle], so a polling worker is sampled at every
    # phase of its cycle; a fixed short gap would phase-lock with the poll and bias the result.
    idle_cycle: float = 0.02
    extra: tuple[str, ...] = ()  # more worker flags (ours: --history ...)


@dataclass
class Row:
    """One line of the table; ``samples`` holds one number per run for each metric."""

    workload: str
    system: str
    unit: str
    higher_is_better: bool = True
    samples: dict[str, list[float]] = field(default_factory=dict)
    top_commands: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def median(self, metric: str = "value") -> Optional[float]:
        values = self.samples.get(metric)
        return statistics.median(values) if values else None


class BenchError(RuntimeError):
    """A run that failed; its row shows the message instead of numbers."""


# -- the private Redis, its counters, and the worker processes ----------------------------------

@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free loopback port, no persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="pyresque-bench-") as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--logfile", os.path.join(tmp, "log")],
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

    def minus(self, other: Usage) -> Usage:
        return Usage(self.reads - other.reads,
                     {k: v - other.commands.get(k, 0) for k, v in self.commands.items()},
                     self.redis_cpu - other.redis_cpu, self.children_cpu - other.children_cpu,
                     self.self_cpu - other.self_cpu)


class Counters:
    """Takes :class:`Usage` snapshots and turns two of them into per-job metrics."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn
        first = self.snapshot()
        self.overhead = self.snapshot().minus(first)  # what one snapshot itself adds

    def snapshot(self) -> Usage:
        conn: Any = self.conn  # execute_command is untyped in redis-py
        info = conn.execute_command("INFO", "stats", "commandstats", "cpu")
        calls = {k[8:]: int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_")}
        mine = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Usage(int(info["total_reads_processed"]), calls,
                     float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                     kids.ru_utime + kids.ru_stime, mine.ru_utime + mine.ru_stime)

    def per_job(self, before: Usage, after: Usage, jobs: int, row: Row, extra_reads: int = 0,
                client_cpu: Optional[float] = None) -> Metrics:
        """Commands, round trips and CPU per job; the busiest commands go to ``row``."""
        delta = after.minus(before).minus(self.overhead)
        commands = {k: v for k, v in delta.commands.items() if v > 0 and k != "info"}
        row.top_commands = {k: round(v / jobs, 3) for k, v in
                            sorted(commands.items(), key=lambda kv: -kv[1])[:8]}
        metrics = {"cmds_per_job": sum(commands.values()) / jobs,
                   "rts_per_job": (delta.reads - extra_reads) / jobs,
                   "redis_cpu_us": delta.redis_cpu / jobs * 1e6}
        if client_cpu is not None:
            metrics["worker_cpu_us"] = client_cpu / jobs * 1e6
        return metrics


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (with ``--processes``, the forked workers)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as fh:
                todo += [int(p) for p in fh.read().split()]
        except OSError:
            try:
                psutil: Any = importlib.import_module("psutil")
                todo += [c.pid for c in psutil.Process(current).children()]
            except Exception:  # no psutil, or the process is gone
                pass
    return pids


def _peak_kb(pid: int, previous: int) -> int:
    """The kernel's peak RSS (VmHWM) of ``pid``; elsewhere psutil's RSS, maximised."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")), previous)
    except OSError:
        try:
            psutil: Any = importlib.import_module("psutil")
            return max(previous, int(psutil.Process(pid).memory_info().rss) // 1024)
        except Exception:
            return previous


class PeakRss(threading.Thread):
    """Follows a worker process tree until stopped; reports its largest process's peak RSS.

    VmHWM only grows, so the last reading (taken at most 20 ms before exit) is the peak.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.peaks: dict[int, int] = {}
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.02):
            for pid in _tree(self.pid):
                self.peaks[pid] = _peak_kb(pid, self.peaks.get(pid, 0))

    def stop(self) -> Optional[float]:
        self.done.set()
        self.join()
        return max(self.peaks.values()) / 1024 if self.peaks else None


class _SocketRecorder:
    """Wraps a connected socket and keeps a copy of everything sent through it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes, *args: Any) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Worker:
    """One worker subprocess of a system, its log in a temporary file."""

    def __init__(self, url: str, system: System, burst: bool) -> None:
        argv = bj.worker_argv(system.framework, url, concurrency=system.concurrency,
                              processes=system.processes, burst=burst, poll=system.poll,
                              extra=system.extra)
        path = os.pathsep.join(p for p in (str(ROOT), str(HERE), os.environ.get("PYTHONPATH"))
                               if p)
        env = {**os.environ, "BENCH_FRAMEWORK": system.framework, "BENCH_REDIS_URL": url,
               "PYTHONPATH": path}
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        self.rss = PeakRss(self.proc.pid)

    def stop(self) -> tuple[Optional[float], str]:
        """SIGTERM if still running; returns (peak RSS MB, the end of its log).

        Raises :class:`BenchError` if it had exited by itself with an error.
        """
        exited = self.proc.poll()
        if exited is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        peak = self.rss.stop()
        self.log.seek(0)
        tail = self.log.read().decode("utf-8", "replace")[-600:]
        self.log.close()
        if exited:  # a worker stopped by SIGTERM may exit non-zero (arq does): not an error
            raise BenchError(f"worker exited with {exited}: {tail}")
        return peak, tail


# -- the workloads ------------------------------------------------------------------------------

class Bench:
    """Runs the workloads against one Redis and collects the rows."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url, self.settings = url, settings
        # No socket timeout: BLPOP waits up to minutes (redis-py 8 defaults to 5 s).
        self.conn = redis.Redis.from_url(url, socket_timeout=None)
        self.counters = Counters(self.conn)
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.skipped: dict[str, str] = {}
        for fw in bj.FRAMEWORKS:
            selected = fw == "pyresque" or fw in settings.peers
            why = bj.available(fw) if selected else "not selected (--peers)"
            if why is not None:
                self.skipped[fw] = why
                self.notes.append(f"{fw}: skipped, {why}")
        self._startup_cpu: dict[str, float] = {}

    def row(self, workload: str, system: str, unit: str, higher: bool = True) -> Row:
        for row in self.rows:
            if (row.workload, row.system, row.unit) == (workload, system, unit):
                return row
        self.rows.append(Row(workload, system, unit, higher))
        return self.rows[-1]

    def measure(self, workload: str, system: System, unit: str,
                fn: Callable[[Row], Metrics]) -> None:
        """One run into its row; a failure becomes the row's note instead of a crash."""
        row = self.row(workload, system.label, unit)
        if system.framework in self.skipped:
            row.note = self.skipped[system.framework]
            return
        try:
            metrics = fn(row)
        except (BenchError, redis.RedisError, OSError, subprocess.SubprocessError) as exc:
            row.note = f"failed: {exc}"[:300]
            print(f"  {workload:8} {system.label:34} FAILED: {exc}", file=sys.stderr)
            return
        for name, value in metrics.items():
            row.samples.setdefault(name, []).append(value)
        print(f"  {workload:8} {system.label:34} {metrics['value']:12,.1f} {unit}",
              file=sys.stderr)

    def _worker_run(self, system: System, items: list[bj.Item]) -> tuple[float, Usage, Usage,
                                                                         Optional[float], int]:
        """Queue ``items`` (start mark first, end mark last) and run one worker through them.

        Returns (seconds from start mark to end mark, usage before, after, peak RSS MB,
        round trips the bench itself made in between).
        """
        self.conn.flushall()
        bj.enqueue(system.framework, self.url, items)
        burst = system.framework != "dramatiq"  # dramatiq has no burst mode: stopped below
        timeout = 120 + len(items) / 50
        before = self.counters.snapshot()
        worker = Worker(self.url, system, burst)
        try:
            if burst:
                worker.proc.wait(timeout)
                ends = self.conn.lrange("bench:end", 0, -1)
            else:
                got = self.conn.blpop(["bench:end"], int(timeout))
                ends = [got[1]] if got else []
                time.sleep(0.2)  # let the last acknowledgements land before counting
        except subprocess.TimeoutExpired:
            raise BenchError(f"no exit after {timeout:.0f}s") from None
        finally:
            after = self.counters.snapshot()  # Redis counters before SIGTERM...
            peak, tail = worker.stop()
        # ...but the worker's CPU once it is reaped (its shutdown is in the start-up baseline).
        after = replace(after, children_cpu=self.counters.snapshot().children_cpu)
        starts = self.conn.lrange("bench:start", 0, -1)
        if not starts or not ends:
            raise BenchError(f"no start or end mark: {tail}")
        return float(ends[0]) - float(starts[0]), before, after, peak, 0 if burst else 1

    def timed(self, system: System, kind: str, args: tuple[Any, ...], n: int,
              row: Row) -> Metrics:
        """jobs/s of ``n`` jobs of ``kind`` and their per-job costs (start-up subtracted)."""
        pause = args[0] if args else 0.0
        marks = [("mark", ("start", pause)), ("mark", ("end", pause))]
        if system.label not in self._startup_cpu:  # a marks-only run: start-up and exit cost
            _, before, after, _, _ = self._worker_run(system, marks)
            self._startup_cpu[system.label] = after.minus(before).children_cpu
        items: list[bj.Item] = [marks[0], *[(kind, args)] * (n - 2), marks[1]]
        elapsed, before, after, peak, extra = self._worker_run(system, items)
        cpu = after.minus(before).children_cpu - self._startup_cpu[system.label]
        metrics = self.counters.per_job(before, after, n, row, extra, client_cpu=cpu)
        metrics["value"] = n / elapsed
        if peak is not None:
            metrics["rss_mb"] = peak
        return metrics

    def drain(self, system: System) -> None:
        self.measure("drain", system, "jobs/s",
                     lambda row: self.timed(system, "noop", (), self.settings.jobs, row))

    def io(self, system: System) -> None:
        s = self.settings
        self.measure("io", system, "jobs/s",
                     lambda row: self.timed(system, "sleep", (s.io_sleep,), s.io_jobs, row))

    def latency(self, system: System, rng: random.Random) -> None:
        """From just before the enqueue call to the job starting (``time.time()`` in both
        processes), one job at a time after a random idle gap (see :class:`System`)."""
        p50 = self.row("latency", system.label, "ms p50", higher=False)
        p99 = self.row("latency", system.label, "ms p99", higher=False)
        if system.framework in self.skipped:
            p50.note = p99.note = self.skipped[system.framework]
            return
        self.conn.flushall()
        worker = Worker(self.url, system, burst=False)
        pusher = bj.Pusher(system.framework, self.url)
        samples: list[float] = []
        try:
            for i in range(3 + self.settings.latency_samples):  # 3 warm-up jobs
                time.sleep(0.01 + rng.uniform(0, system.idle_cycle))
                pushed = time.time()
                pusher.push("mark", "lat", 0.0)
                got = self.conn.blpop(["bench:lat"], 60 if i == 0 else 10)
                if got is None:
                    raise BenchError("a job was not picked up within the timeout")
                if i >= 3:
                    samples.append((float(got[1]) - pushed) * 1000.0)
        except (BenchError, redis.RedisError) as exc:
            p50.note = p99.note = f"failed: {exc}"[:300]
            return
        finally:
            pusher.close()
            peak, _ = worker.stop()
        p50.samples.setdefault("value", []).append(statistics.median(samples))
        p99.samples.setdefault("value", []).append(
            statistics.quantiles(samples, n=100, method="inclusive")[98])
        if peak is not None:
            p50.samples.setdefault("rss_mb", []).append(peak)
        print(f"  latency  {system.label:34} p50 {p50.samples['value'][-1]:8.2f} ms  p99 "
              f"{p99.samples['value'][-1]:8.2f} ms", file=sys.stderr)

    def floor(self) -> None:
        """Our per-job Redis work and nothing else.

        The bytes of one steady-state claim (completion folded in) are recorded off the socket
        of a real :class:`Claimer`, so the raw loop sends exactly what the worker sends,
        whatever the claim script's arguments are today, and replays them with a bare socket
        and a hiredis reader. The Claimer loop adds our claim API's own client work.
        """
        n, run_at = self.settings.jobs, wire.run_at()

        def loop(step: Callable[[], bool], setup: Callable[[], None]) -> Callable[[Row], Metrics]:
            def measure(row: Row) -> Metrics:
                self.conn.flushall()
                bj.enqueue("pyresque", self.url, [("noop", ())] * n)
                setup()
                before, started, done = self.counters.snapshot(), time.perf_counter(), 1
                while step():
                    done += 1
                elapsed, after = time.perf_counter() - started, self.counters.snapshot()
                cpu = after.minus(before).self_cpu
                return {**self.counters.per_job(before, after, done, row, client_cpu=cpu),
                        "value": done / elapsed}
            return measure

        state: dict[str, Any] = {}

        def claimer_setup() -> None:
            conn = state["conn"] = connect(self.url, single_connection_client=True)
            state["claim"] = Claimer(conn, wire.Keys(), "bench:1:floor").claim
            state["claim"]([bj.QUEUE], NO_FINISH, run_at)  # loads the script, takes a job

        def claimer_step() -> bool:
            return state["claim"]([bj.QUEUE], SUCCESS, run_at) is not None

        def raw_setup() -> None:
            claimer_setup()  # a real claimer takes the first job and shows what it sends
            conn = state["conn"]  # redis-py's private socket: only a benchmark may do this
            recorder = _SocketRecorder(conn.connection._sock)
            conn.connection._sock = recorder
            claimer_step()
            state["bytes"] = b"".join(recorder.sent)
            state["sock"], state["reader"] = recorder.sock, hiredis.Reader()

        def raw_step() -> bool:
            sock, reader = state["sock"], state["reader"]
            sock.sendall(state["bytes"])
            reply = reader.gets()
            while reply is False:
                reader.feed(sock.recv(65536))
                reply = reader.gets()
            return int(reply[0]) == 1

        self.measure("floor", System(FLOOR, "pyresque"), "jobs/s", loop(raw_step, raw_setup))
        self.measure("floor", System("Claimer.claim loop, 1 conn", "pyresque"), "jobs/s",
                     loop(claimer_step, claimer_setup))

    def _check_enqueue_floor(self) -> None:
        """The enqueue floors assume our client sends SADD + RPUSH per call; say if not."""
        if "pyresque" in self.skipped or getattr(self, "_floor_checked", False):
            return
        self._floor_checked = True
        from pyresqueworker import Client

        client = Client(redis.Redis.from_url(self.url))
        client.enqueue_to(bj.QUEUE, "BenchNoop")  # connection set-up, script loading
        for call, label in ((lambda: client.enqueue_to(bj.QUEUE, "BenchNoop"), "enqueue_to"),
                            (lambda: client.enqueue_many(bj.QUEUE, [("BenchNoop", ())] * 1000),
                             "enqueue_many of 1,000")):
            before = self.counters.snapshot()
            call()
            delta = self.counters.snapshot().minus(before).minus(self.counters.overhead)
            sent = {k: v for k, v in delta.commands.items() if v > 0 and k != "info"}
            if sent != {"sadd": 1, "rpush": 1}:
                self.notes.append(f"enqueue floor differs from ours: {label} sent {sent}")

    def enqueue(self) -> None:
        """Enqueue rates. The floors send our exact commands with items encoded in advance."""
        n, keys = self.settings.jobs, wire.Keys()
        item = wire.encode_job("BenchNoop", [])

        def floor(batch: int) -> Callable[[Row], Metrics]:
            def measure(_row: Row) -> Metrics:
                self.conn.flushall()
                pipe = self.conn.pipeline(transaction=False)
                started = time.perf_counter()
                for offset in range(0, n, batch):
                    pipe.sadd(keys.queues, bj.QUEUE)
                    pipe.rpush(keys.queue(bj.QUEUE), *[item] * min(batch, n - offset))
                    pipe.execute()
                return {"value": n / (time.perf_counter() - started)}
            return measure

        self._check_enqueue_floor()

        def rate(framework: str, bulk: bool) -> Callable[[Row], Metrics]:
            def measure(_row: Row) -> Metrics:
                self.conn.flushall()
                return {"value": n / bj.enqueue_rate(framework, self.url, n, bulk)}
            return measure

        for label, framework, fn in [
            ("floor: SADD+RPUSH pipeline/job", "pyresque", floor(1)),
            ("ours enqueue_to", "pyresque", rate("pyresque", False)),
            ("rq Queue.enqueue", "rq", rate("rq", False)),
            ("dramatiq broker.enqueue", "dramatiq", rate("dramatiq", False)),
            ("arq enqueue_job", "arq", rate("arq", False)),
            ("floor: SADD+RPUSH x1000 pipeline", "pyresque", floor(1000)),
            ("ours enqueue_many", "pyresque", rate("pyresque", True)),
            ("rq Queue.enqueue_many", "rq", rate("rq", True)),
        ]:
            self.measure("enqueue", System(label, framework), "jobs/s", fn)


# -- what runs, and the report --------------------------------------------------------------------

OURS_1, OURS_8, OURS_2X8, OURS_25 = (
    System("ours 1 proc x 1 slot", "pyresque", 1), System("ours 1 proc x 8 slots", "pyresque", 8),
    System("ours 2 procs x 8 slots", "pyresque", 8, 2),
    System("ours 1 proc x 25 slots", "pyresque", 25))
PEER_DRAIN = [
    System("rq SimpleWorker", "rq"),
    # dramatiq backs off up to 1 s when idle; arq polls every 0.5 s by default.
    System("dramatiq 1 proc x 8 threads", "dramatiq", 8, idle_cycle=0.5),
    System("arq (defaults)", "arq", idle_cycle=0.5),
    System("arq (poll 10 ms)", "arq", poll=0.01)]
# The cost of job history: the same single slot with --history on.
OURS_1_HISTORY = System("ours 1 proc x 1 slot --history", "pyresque", 1,
                        extra=("--history", "1d"))
DRAIN = [OURS_1, OURS_1_HISTORY, OURS_8, OURS_2X8, OURS_25, *PEER_DRAIN]
LATENCY = [OURS_1, OURS_8, *PEER_DRAIN]
FLOOR = "raw socket loop, same bytes, 1 conn"


def io_systems(c: int) -> list[System]:
    return [System(f"ours 1 proc x {c} slots", "pyresque", c),
            System(f"dramatiq 1 proc x {c} threads", "dramatiq", c),
            System(f"arq max_jobs={c} (poll 0.5 s)", "arq", c),
            System(f"arq max_jobs={c}, poll 10 ms", "arq", c, poll=0.01)]


def ratio_pairs(io_c: int) -> list[tuple[str, str, str, str]]:
    """(workload, unit, ours, peer) pairs shown as ours / peer."""
    pairs = [("drain", "jobs/s", s.label, p) for s in (OURS_1, OURS_8, OURS_2X8)
             for p in (FLOOR, *(q.label for q in PEER_DRAIN))]
    pairs += [("enqueue", "jobs/s", "ours enqueue_to", p) for p in (
        "floor: SADD+RPUSH pipeline/job", "rq Queue.enqueue", "dramatiq broker.enqueue",
        "arq enqueue_job")]
    pairs += [("enqueue", "jobs/s", "ours enqueue_many", p) for p in (
        "floor: SADD+RPUSH x1000 pipeline", "rq Queue.enqueue_many")]
    io = io_systems(io_c)
    pairs += [("io", "jobs/s", io[0].label, s.label) for s in io[1:]]
    pairs += [("latency", unit, OURS_1.label, s.label) for unit in ("ms p50", "ms p99")
              for s in PEER_DRAIN]
    return pairs


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _find(rows: list[Row], workload: str, system: str, unit: str = "jobs/s") -> Optional[Row]:
    return next((r for r in rows if (r.workload, r.system, r.unit) == (workload, system, unit)),
                None)


def _med(rows: list[Row], workload: str, system: str, unit: str = "jobs/s",
         metric: str = "value") -> Optional[float]:
    row = _find(rows, workload, system, unit)
    return row.median(metric) if row else None


def targets(rows: list[Row], settings: Settings) -> list[dict[str, Any]]:
    """The issue's targets with the measured medians and whether each is met."""
    def best(systems: list[System]) -> Optional[float]:
        values = [v for s in systems if (v := _med(rows, "drain", s.label)) is not None]
        return max(values, default=None)

    def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return a / b if a is not None and b else None

    one_proc = best([OURS_1, OURS_8])
    rts = [v for s in (OURS_1, OURS_8, OURS_2X8, OURS_25)
           if (v := _med(rows, "drain", s.label, metric="rts_per_job")) is not None]
    checks: list[tuple[str, Optional[float], float, bool]] = [
        ("drain, 1 process / rq SimpleWorker",
         ratio(one_proc, _med(rows, "drain", PEER_DRAIN[0].label)), 20, True),
        ("drain, 1 process / dramatiq 8 threads",
         ratio(one_proc, _med(rows, "drain", PEER_DRAIN[1].label)), 2.5, True),
        ("drain, 1 process / floor", ratio(one_proc, _med(rows, "floor", FLOOR)), 0.70, True),
        ("drain, 1 slot with --history / without",
         ratio(_med(rows, "drain", OURS_1_HISTORY.label), _med(rows, "drain", OURS_1.label)),
         0.85, True),
        ("drain, best configuration (jobs/s)", best([OURS_1, OURS_8, OURS_2X8, OURS_25]),
         10_000, True),
        ("drain, round trips per job (worst of ours)", max(rts, default=None), 1.5, False),
        ("enqueue_to (jobs/s)", _med(rows, "enqueue", "ours enqueue_to"), 7_000, True),
        ("enqueue_many (jobs/s)", _med(rows, "enqueue", "ours enqueue_many"), 80_000, True),
        ("I/O-bound (jobs/s)", _med(rows, "io", io_systems(settings.io_concurrency)[0].label),
         1_600, True),
        ("idle pick-up p50, 1 slot (ms)", _med(rows, "latency", OURS_1.label, "ms p50"), 20,
         False),
        ("idle pick-up p99, 1 slot (ms)", _med(rows, "latency", OURS_1.label, "ms p99"), 100,
         False),
        ("peak RSS with 25 slots (MB)", _med(rows, "drain", OURS_25.label, metric="rss_mb"), 50,
         False),
    ]
    return [{"target": name, "measured": value, "goal": (">= " if up else "<= ") + _fmt(goal),
             "met": None if value is None else (value >= goal if up else value <= goal)}
            for name, value, goal, up in checks]


COLUMNS = [("cmds_per_job", "cmds/job"), ("rts_per_job", "RTs/job"),
           ("worker_cpu_us", "wkr us/job"), ("redis_cpu_us", "Redis us/job"), ("rss_mb", "RSS MB")]


def render(rows: list[Row], ratios: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    """The table, the ratios and the targets as text (CPU columns are per job)."""
    head = "".join(f"{title:>13}" for _, title in COLUMNS)
    out = [f"{'workload':8} {'system':34} {'median':>9} {'min-max':>17} {'unit':7}{head}  note"]
    for r in rows:
        values = r.samples.get("value", [])
        spread = f"{_fmt(min(values))}-{_fmt(max(values))}" if values else "-"
        cells = "".join(f"{_fmt(r.median(m)):>13}" for m, _ in COLUMNS)
        out.append(f"{r.workload:8} {r.system:34} {_fmt(r.median()):>9} {spread:>17} "
                   f"{r.unit:7}{cells}  {r.note}")
    out += ["", "Ratios ours / peer, medians (jobs/s: higher is better; ms: lower is better)"]
    out += [f"  {q['workload']:8} {q['unit']:7} {q['ours']:24} / {q['peer']:34} "
            f"{q['ratio']:8.3g}" for q in ratios]
    out += ["", "Targets"]
    out += [f"  {c['target']:46} {_fmt(c['measured']):>9}  goal {c['goal']:9} "
            f"{({True: 'met', False: 'MISSED', None: 'not measured'})[c['met']]}"
            for c in checks]
    return "\n".join(out)


def machine_info(url: str) -> dict[str, Any]:
    """What the numbers were measured on (and which code: a hash of the package's files)."""
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh
                        if ln.startswith("model name")), "")
    versions: dict[str, Optional[str]] = {}
    for dist in ("pyresqueworker", "redis", "hiredis", "rq", "dramatiq", "arq"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(),
            "redis_server": redis.Redis.from_url(url).info("server").get("redis_version"),
            "load_avg_start": os.getloadavg(), "versions": versions,
            "package_sha256": package_hash()}


def package_hash() -> str:
    """A hash of the package's source, to tell which code was measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "pyresqueworker").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run(settings: Settings, url: str) -> tuple[dict[str, Any], list[Row]]:
    """Every selected workload, ``settings.runs`` times, runs interleaved across systems."""
    bench, rng = Bench(url, settings), random.Random(0)
    info = machine_info(url)
    for n in range(settings.runs):
        print(f"run {n + 1}/{settings.runs}", file=sys.stderr)
        if "floor" in settings.only:
            bench.floor()
        for system in DRAIN if "drain" in settings.only else []:
            bench.drain(system)
        if "enqueue" in settings.only:
            bench.enqueue()
        for system in io_systems(settings.io_concurrency) if "io" in settings.only else []:
            bench.io(system)
        for system in LATENCY if "latency" in settings.only else []:
            bench.latency(system, rng)
    info["load_avg_end"] = os.getloadavg()
    if package_hash() != info["package_sha256"]:
        bench.notes.append("the package's source changed during the run: results mix versions")
    if "io" in settings.only and "rq" not in bench.skipped:
        bench.notes.append(f"io: rq SimpleWorker not run (one job at a time: {settings.io_jobs}"
                           f" x {settings.io_sleep * 1000:.0f} ms)")
    rows = bench.rows
    ratios = [{"workload": w, "unit": u, "ours": o, "peer": p, "ratio": a / b}
              for w, u, o, p in ratio_pairs(settings.io_concurrency)
              if (a := _med(rows, w, o, u)) is not None and (b := _med(rows, w, p, u))]
    results = {"machine": info, "settings": asdict(settings), "notes": bench.notes,
               "rows": [{**asdict(r), "median": {m: r.median(m) for m in r.samples}}
                        for r in rows],
               "ratios": ratios, "targets": targets(rows, settings)}
    return results, rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, 1 run: seconds")
    parser.add_argument("--json", default="bench-results.json", help="results file")
    parser.add_argument("--runs", type=int, help="runs of each workload (3; quick 1)")
    parser.add_argument("--jobs", type=int, help="drain, floor and enqueue jobs (20,000)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads to run")
    parser.add_argument("--peers", default=",".join(bj.PEERS), help="peers ('' for none)")
    args = parser.parse_args(argv)
    only = tuple(w for w in args.only.split(",") if w)
    peers = tuple(p for p in args.peers.split(",") if p)
    unknown = (set(only) - set(WORKLOADS)) | (set(peers) - set(bj.PEERS))
    if unknown:
        parser.error(f"unknown workload or peer: {', '.join(sorted(unknown))}")
    settings = Settings(peers=peers, only=only)
    if args.quick:
        settings = replace(settings, runs=1, jobs=2_000, io_jobs=200, latency_samples=20)
    settings = replace(settings, runs=args.runs or settings.runs,
                       jobs=max(args.jobs or settings.jobs, 3))
    with redis_server() as url:
        results, rows = run(settings, url)
    m, s = results["machine"], settings
    print(f"pyresqueworker benchmark, {m['date']}: {m['nproc']} CPUs ({m['cpu']}), Python "
          f"{m['python']}, redis-server {m['redis_server']}, {m['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) +
          f"; package sha256 {m['package_sha256']}; load average at start "
          f"{m['load_avg_start'][0]:.2f}, at end {m['load_avg_end'][0]:.2f}")
    print(f"{s.runs} run(s) each; drain/floor/enqueue {s.jobs:,} jobs; io {s.io_jobs:,} x "
          f"{s.io_sleep * 1000:.0f} ms at concurrency {s.io_concurrency}; latency "
          f"{s.latency_samples} samples\n")
    print(render(rows, results["ratios"], results["targets"]))
    for note in results["notes"]:
        print(f"note: {note}")
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
