"""Issue 13's scale workloads: payload size, I/O at high concurrency, logging cost, idle cost.

The pick-up latency from the last of five watched queues is a ``latency`` system (see
``benchkit.report.LATENCY``), and Sidekiq is a ``drain`` peer; both reuse :class:`Bench` as is.
"""

from __future__ import annotations

import random
import string
import threading
import time
from dataclasses import replace
from typing import Any, Optional

import hiredis

from benchkit import jobs as bj
from benchkit.common import BenchError, Metrics, Row, System
from benchkit.proc import Worker, threads_of
from benchkit.redis_server import count_clients, monitor_split
from benchkit.workloads import SPIN, Bench
from pyresqueworker.protocol import wire
from pyresqueworker.protocol._resp import _send_frames as send_frames
from pyresqueworker.protocol._spin import ReplySpin
from pyresqueworker.protocol.connection import connect

__all__ = ["PAYLOAD_FLOOR", "ScaleBench", "size_label"]

PAYLOAD_FLOOR = "floor: Resque's commands, bare socket"


def size_label(size: int) -> str:
    """100 B, 10 KB, 1 MB."""
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def _pack(*args: bytes) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def _payload(size: int) -> str:
    """``size`` bytes of printable ASCII (the same every run: a fixed seed)."""
    rng = random.Random(size)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


class _ThreadPeak(threading.Thread):
    """The most threads a worker process tree had, sampled every 50 ms from /proc."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done, self.peak = pid, threading.Event(), 0
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, threads_of(self.pid))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


class ScaleBench(Bench):
    """:class:`Bench` with the scale workloads."""

    def _wait_registered(self, worker: Worker, want: int, timeout: float) -> float:
        """Wait until ``want`` worker ids are in ``resque:workers``; returns that moment."""
        deadline, key, have = time.monotonic() + timeout, wire.Keys().workers, 0
        while time.monotonic() < deadline:
            have = int(self.conn.scard(key))
            if have >= want:
                return time.monotonic()
            if not worker.alive():
                worker.stop()  # raises with the end of its log
                raise BenchError("worker exited during start-up")
            time.sleep(0.01)
        raise BenchError(f"only {have} of {want} workers registered after {timeout:.0f}s")

    def _wait_end(self, worker: Worker, timeout: float) -> float:
        """The end mark's time, waited for (failing early if the worker dies)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.conn.blpop(["bench:end"], 1)
            if got is not None:
                return float(got[1])
            if not worker.alive():
                worker.stop()
                raise BenchError("worker exited before the end mark")
        raise BenchError(f"no end mark after {timeout:.0f}s")

    # -- payload size ----------------------------------------------------------------------------

    def payload(self, system: System, size: int, n: int) -> None:
        """Drain ``n`` no-op jobs that each carry a ``size``-byte string."""
        sized = replace(system, label=f"{system.label}, {size_label(size)}")
        data = _payload(size)
        self.measure("payload", sized, "jobs/s",
                     lambda row: self.timed(sized, "payload", (data,), max(n, 3), row))

    def payload_floor(self, size: int, n: int) -> None:
        """What Ruby Resque's own commands for a job cost Redis, with no client around them.

        Per job: ``DEL`` of the last job's worker key and its two ``INCRBY``s in the round trip
        of the ``LPOP``, then the ``SET`` of the worker key holding the payload (Resque's
        ``done_working``, ``reserve`` and ``working_on``), on a bare socket that polls for its
        replies like a lone worker slot. Neither lost-reply safe nor crash safe: a floor.
        """
        keys, worker = wire.Keys(), "bench:1:payload-floor"
        wkey, queue = keys.worker(worker).encode(), keys.queue(bj.QUEUE).encode()
        head = b'{"queue":"%s","run_at":"%s","payload":' % (bj.QUEUE.encode(),
                                                             wire.run_at().encode())
        finish = b"".join(_pack(*c) for c in (
            (b"DEL", wkey), (b"INCRBY", keys.stat("processed").encode(), b"1"),
            (b"INCRBY", keys.stat("processed", worker).encode(), b"1")))
        lpop = _pack(b"LPOP", queue)
        state: dict[str, Any] = {}

        def replies(count: int) -> list[Any]:
            sock, reader, buffer = state["sock"], state["reader"], state["buffer"]
            got: list[Any] = []
            while len(got) < count:
                reply = reader.gets()
                if reply is False:
                    state["spin"].wait(sock)
                    reader.feed(buffer, 0, sock.recv_into(buffer))
                    continue
                got.append(reply)
            return got

        def step(first: bool = False) -> bool:
            sock = state["sock"]
            sock.sendall(lpop if first else finish + lpop)
            item = replies(1 if first else 4)[-1]
            if item is None:
                return False
            value_size = len(head) + len(item) + 1
            send_frames(sock, [b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s" % (
                len(wkey), wkey, value_size, head), item, b"}\r\n"])
            replies(1)
            return True

        def setup() -> None:
            conn = state["conn"] = connect(self.url, single_connection_client=True)
            conn.ping()  # redis-py's private socket: only a benchmark may do this
            state.update(sock=conn.connection._sock, reader=hiredis.Reader(),
                         buffer=bytearray(1 << 20), spin=ReplySpin(SPIN))
            step(first=True)

        system = System(f"{PAYLOAD_FLOOR}, {size_label(size)}", "pyresque")  # (payload_floor)
        data = _payload(size)
        try:
            self.measure("payload", system, "jobs/s",
                         self.bare_loop([("payload", (data,))] * max(n, 3), setup, step))
        finally:
            if "conn" in state:
                state.pop("conn").close()

    # -- logging cost ----------------------------------------------------------------------------

    def logging(self, system: System) -> None:
        """The no-op drain at ``system.log_level`` (info writes one line per job)."""
        self.measure("logging", system, "jobs/s",
                     lambda row: self.timed(system, "noop", (), self.settings.jobs, row))

    # -- I/O-bound at high concurrency -----------------------------------------------------------

    def io_scale(self, system: System, n: int) -> None:
        """``n`` jobs sleeping ``io_sleep`` (ours: ``await asyncio.sleep``)."""
        self.measure("ioscale", system, "jobs/s", lambda row: self._io_scale(system, n, row))

    def _io_scale(self, system: System, n: int, row: Row) -> Metrics:
        ours, pause = system.framework == "pyresque", self.settings.io_sleep
        mark, sleep = ("amark", "asleep") if ours else ("mark", "sleep")
        items: list[bj.Item] = [(mark, ("start", pause)), *[(sleep, (pause,))] * (n - 2),
                                (mark, ("end", pause))]
        slots = system.processes * (system.concurrency or 1)
        self.conn.flushall()
        spawned = time.monotonic()
        worker = self.worker(system, burst=False)
        threads = _ThreadPeak(worker.proc.pid)
        startup: Optional[float] = None
        try:
            if ours:  # start-up: until every slot's worker id is registered
                startup = self._wait_registered(worker, slots, 60 + slots / 50) - spawned
            before = self.counters.snapshot()
            bj.enqueue(system.framework, self.url, items)
            end = self._wait_end(worker, 120 + n * pause)
            time.sleep(0.2)  # the last acknowledgements
            after = self.counters.snapshot()
            conns = count_clients(self.conn)  # after the counters: CLIENT LIST costs Redis CPU
        finally:
            peak_threads = threads.stop()
            peak, _ = worker.stop()
        starts = self.conn.lrange("bench:start", 0, -1)
        if not starts:
            raise BenchError("no start mark")
        metrics = self.counters.per_job(before, after, n, row, extra_reads=1)
        metrics.update(value=n / (end - float(starts[0])),
                       conns=conns, threads=peak_threads)
        if startup is not None:
            metrics["startup_s"] = startup
        if peak is not None:
            metrics["rss_mb"] = peak
        return metrics

    # -- idle cost -------------------------------------------------------------------------------

    def idle(self, system: System, interval: float) -> None:
        """Commands/s and Redis CPU % of idle workers (all registered, start-up traffic over)."""
        window = max(self.settings.idle_window, 2 * interval)
        self.measure("idle", system, "cmds/s",
                     lambda row: self._idle(system, interval, window, row))

    def _idle(self, system: System, interval: float, window: float, row: Row) -> Metrics:
        slots = system.processes * (system.concurrency or 1)
        self.conn.flushall()
        spawned = time.monotonic()
        worker = self.worker(system, burst=False)
        try:
            startup = self._wait_registered(worker, slots, 60 + system.processes * 3) - spawned
            time.sleep(interval + 1.0)  # past start-up: every slot in its idle wait
            before = self.counters.snapshot()
            time.sleep(window)
            after = self.counters.snapshot()
            metrics = self.counters.rates(before, after, row)
            top, inner = monitor_split(self.url, window)  # its own window: MONITOR costs CPU
            metrics.update(top_level_per_s=top / window, inner_per_s=inner / window,
                           conns=count_clients(self.conn), startup_s=startup)
            if not worker.alive():
                raise BenchError("a worker exited while idle")
        finally:
            peak, _ = worker.stop()
        if peak is not None:
            metrics["rss_mb"] = peak
        return metrics
