"""The classic workloads: drain, floor, enqueue, io and latency (for ``scripts/bench.py``)."""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Callable, Optional

import hiredis
import redis

from benchkit import jobs as bj
from benchkit.common import BenchError, Metrics, Row, Settings, System
from benchkit.proc import Worker
from benchkit.redis_server import Counters, Pinning, Usage
from pyresqueworker.protocol import wire
from pyresqueworker.protocol._spin import ReplySpin
from pyresqueworker.protocol.connection import connect
from pyresqueworker.worker._claim import NO_FINISH, SUCCESS, Claimer
from pyresqueworker.worker.config import WorkerConfig

__all__ = ["FLOOR", "Bench", "Enqueue"]

FLOOR = "raw socket loop, same bytes, 1 conn"
SPIN = WorkerConfig.reply_spin  # what a lone slot polls for its reply by default (seconds)
# Queues a run's items in place of the framework's own client (``Bench.timed(enqueue=)``).
Enqueue = Callable[[list[bj.Item]], None]


class _SocketRecorder:
    """Wraps a connected socket and keeps a copy of everything sent through it."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes, *args: Any) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data, *args)

    def send(self, data: bytes, *args: Any) -> int:
        sent = int(self.sock.send(data, *args))
        self.sent.append(bytes(data[:sent]))
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Bench:
    """Runs the workloads against one Redis and collects the rows."""

    def __init__(self, url: str, settings: Settings, pinning: Pinning) -> None:
        self.url, self.settings, self.pinning = url, settings, pinning
        # No socket timeout: BLPOP waits up to minutes (redis-py 8 defaults to 5 s). Named
        # bench*: connection counts leave the bench's own connections out.
        self.conn = redis.Redis.from_url(url, socket_timeout=None, client_name="bench")
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
        self._startup_cpu: dict[str, tuple[float, float]] = {}
        if pinning.why_not is not None:
            self.notes.append(pinning.why_not)

    def worker(self, system: System, burst: bool) -> Worker:
        """A worker of ``system``, pinned to the workers' core."""
        return Worker(self.url, system, burst, self.pinning.worker())

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

    def _worker_run(self, system: System, items: list[bj.Item],
                    enqueue: Optional[Enqueue] = None) -> tuple[float, Usage, Usage,
                                                                Optional[float], int]:
        """Queue ``items`` (start mark first, end mark last; with ``enqueue`` when given, else
        with the framework's own client) and run one worker through them.

        Returns (seconds from start mark to end mark, usage before, after, peak RSS MB,
        round trips the bench itself made in between).
        """
        self.conn.flushall()
        if enqueue is not None:
            enqueue(items)
        else:
            bj.enqueue(system.framework, self.url, items)
        # dramatiq and Sidekiq have no burst mode: stopped below
        burst = system.framework not in ("dramatiq", "sidekiq")
        timeout = 120 + len(items) / 50
        before = self.counters.snapshot()
        worker = self.worker(system, burst)
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
              row: Row, pause: float = 0.0, enqueue: Optional[Enqueue] = None,
              count: Sequence[str] = ()) -> Metrics:
        """jobs/s of ``n`` jobs of ``kind`` and their per-job costs (start-up subtracted).

        The start and end marks take ``pause`` seconds like the jobs between them. A marks-only
        run of the same system measures start-up and exit: its worker CPU and its Redis CPU
        (registration, the first script load, heartbeats) come off the per-job figures.
        ``enqueue`` queues the items instead of the framework's own client (both runs);
        ``count`` names commands whose calls per job are reported too (``<name>_per_job``).
        """
        marks = [("mark", ("start", pause)), ("mark", ("end", pause))]
        if system.label not in self._startup_cpu:  # a marks-only run: start-up and exit cost
            _, before, after, _, _ = self._worker_run(system, marks, enqueue)
            cost = after.minus(before)
            self._startup_cpu[system.label] = (cost.children_cpu, cost.redis_cpu)
        items: list[bj.Item] = [marks[0], *[(kind, args)] * (n - 2), marks[1]]
        elapsed, before, after, peak, extra = self._worker_run(system, items, enqueue)
        startup_cpu, startup_redis = self._startup_cpu[system.label]
        cpu = after.minus(before).children_cpu - startup_cpu
        metrics = self.counters.per_job(before, after, n, row, extra, client_cpu=cpu,
                                        count=count)
        metrics["redis_cpu_us"] -= startup_redis / n * 1e6
        metrics["value"] = n / elapsed
        if peak is not None:
            metrics["rss_mb"] = peak
        return metrics

    def drain(self, system: System) -> None:
        # (EVALs per job: what the workflow's results rows are set against)
        self.measure("drain", system, "jobs/s",
                     lambda row: self.timed(system, "noop", (), self.settings.jobs, row,
                                            count=("eval", "evalsha")))

    def io(self, system: System) -> None:
        s = self.settings
        self.measure("io", system, "jobs/s",
                     lambda row: self.timed(system, "sleep", (s.io_sleep,), s.io_jobs, row,
                                            s.io_sleep))

    def latency(self, system: System, rng: random.Random) -> None:
        """From just before the enqueue call to the job starting (``time.time()`` in both
        processes), one job at a time after a random idle gap (see :class:`System`)."""
        p50 = self.row("latency", system.label, "ms p50", higher=False)
        p99 = self.row("latency", system.label, "ms p99", higher=False)
        if system.framework in self.skipped:
            p50.note = p99.note = self.skipped[system.framework]
            return
        self.conn.flushall()
        worker = self.worker(system, burst=False)
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

    def bare_loop(self, items: list[bj.Item], setup: Callable[[], None],
                  step: Callable[[], bool]) -> Callable[[Row], Metrics]:
        """A run of a loop in this process: ``items`` queued, ``setup`` (which may take the
        first job), then ``step`` until it says the queue is empty; costs per job, the bench
        process's own CPU as the client's."""
        def measure(row: Row) -> Metrics:
            self.conn.flushall()
            bj.enqueue("pyresque", self.url, items)
            setup()
            before, started, done = self.counters.snapshot(), time.perf_counter(), 1
            while step():
                done += 1
            elapsed, after = time.perf_counter() - started, self.counters.snapshot()
            cpu = after.minus(before).self_cpu
            return {**self.counters.per_job(before, after, done, row, client_cpu=cpu),
                    "value": done / elapsed}
        return measure

    def floor(self) -> None:
        """Our per-job Redis work and nothing else.

        The bytes of one steady-state claim (completion folded in) are recorded off the socket
        of a real :class:`Claimer`, so the raw loop sends exactly what the worker sends,
        whatever the claim script's arguments are today, and replays them with a bare socket
        and a hiredis reader. The Claimer loop adds our claim API's own client work. Both poll
        for each reply for as long as a lone worker slot does (see ``ReplySpin``): a floor that
        slept on its replies would cost Redis more than the worker does.
        """
        n, run_at = self.settings.jobs, wire.run_at()
        noops: list[bj.Item] = [("noop", ())] * n

        def loop(step: Callable[[], bool], setup: Callable[[], None]) -> Callable[[Row], Metrics]:
            return self.bare_loop(noops, setup, step)

        state: dict[str, Any] = {}

        def claimer_setup() -> None:
            conn = state["conn"] = connect(self.url, single_connection_client=True)
            claimer = Claimer(conn, wire.Keys(), "bench:1:floor", SPIN)
            state["claim"], state["link"] = claimer.claim, claimer.caller.connection
            state["claim"]([bj.QUEUE], NO_FINISH, run_at)  # loads the script, takes a job

        def claimer_step() -> bool:
            return state["claim"]([bj.QUEUE], SUCCESS, run_at) is not None

        def raw_setup() -> None:
            claimer_setup()  # a real claimer takes the first job and shows what it sends
            link = state["link"]  # the claim's own connection (protocol._claim_link)
            recorder = _SocketRecorder(link.sock)
            link.sock = recorder
            claimer_step()
            state["bytes"] = b"".join(recorder.sent)
            recorder.sock.settimeout(None)  # (a link's waits are sliced: a bare socket's not)
            state["sock"], state["reader"] = recorder.sock, hiredis.Reader()
            state["spin"] = ReplySpin(SPIN)

        def raw_step() -> bool:
            sock, reader = state["sock"], state["reader"]
            sock.sendall(state["bytes"])
            state["spin"].wait(sock)
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
