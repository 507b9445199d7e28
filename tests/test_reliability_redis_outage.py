"""No job lost when Redis goes away: restarts, a cut or late claim reply, a stop during an outage.

* Restarts: the test runs its own ``redis-server`` with ``--appendonly yes --appendfsync always``
  (every acknowledged write survives a restart), stops it under load three times and starts it
  again on the same port and directory; the workers ride it out (their log says so) and finish.
* TERM while Redis is down: the worker exits with one line (it cannot unregister) and the next
  worker on the host recovers what it held.
* A proxy between worker and Redis drops the reply to a claim the script ran: cut (the worker
  retries) or held (the worker is stopped before it hears of the job). Neither may lose it.

Waits poll conditions against deadlines; the figures (outage and resume seconds) are printed,
never asserted. Run with ``-s`` to see the ``RELIABILITY ...`` lines.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Optional

import pytest
import redis
from apps.reliability_jobs import (
    DONE,
    Fleet,
    account,
    drained,
    held_jobs,
    push_records,
    worker_leftovers,
)
from conftest import RedisServer, free_port
from servers import server_binary
from worker_helpers import wait_until

pytestmark = pytest.mark.slow

NS = "resque:"


class DurableRedis:
    """A redis-server with an fsync-always AOF that can be shut down and started again."""

    def __init__(self) -> None:
        self.binary = server_binary()
        self.dir = tempfile.mkdtemp(prefix="pyresque-aof-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.start()

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log()}")
            try:
                return bool(self.client().ping())
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

        wait_until(answers, "redis-server to answer", 10.0)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def shutdown(self) -> None:
        """SIGTERM: Redis's clean shutdown (the AOF is fsynced first); wait for the exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(10) == 0, self.log()

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "redis.log"), encoding="utf-8") as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def durable() -> Iterator[DurableRedis]:
    server = DurableRedis()
    yield server
    server.close()


OUTAGE_ARGS = ("--queues", "outage", "--concurrency", "4", "--interval", "0.1",
               "--heartbeat-interval", "0.5", "--prune-after", "5")
OUTAGE_JOBS = 3000
OUTAGES = 3
OUTAGE_PAUSE = 1.0  # how long Redis stays down each time: the scenario, not an assertion


def restart_under_load(durable: DurableRedis, progress: int) -> tuple[float, float]:
    """Once ``progress`` jobs are done, stop Redis, wait, start it; (outage s, resume s)."""
    r = durable.client()
    wait_until(lambda: r.scard(DONE) >= progress, f"{progress} jobs done", 20.0)
    r.close()
    down_at = time.monotonic()
    durable.shutdown()
    time.sleep(OUTAGE_PAUSE)
    durable.start()
    up_at = time.monotonic()
    r = durable.client()
    try:
        queued = r.llen(NS + "queue:outage")
        assert queued > 0, "the queue drained before the outage: push more jobs"
        # Resumed = a job was claimed from the queue after the restart (not just the jobs
        # that were running finishing their own writes).
        wait_until(lambda: r.llen(NS + "queue:outage") < queued,
                   "a claim after the restart", 30.0, 0.01)
        return up_at - down_at, time.monotonic() - up_at
    finally:
        r.close()


def test_redis_restarts_mid_run_lose_no_job(durable: DurableRedis) -> None:
    r = durable.client()
    ids = [f"o{i}" for i in range(OUTAGE_JOBS)]
    push_records(r, "outage", ids, sleep_ms=lambda i: 1 + i % 3)
    r.close()
    fleet = Fleet(durable.url, *OUTAGE_ARGS)
    try:
        workers = [fleet.start(), fleet.start()]
        figures = [restart_under_load(durable, 300 + 600 * n) for n in range(OUTAGES)]
        r = durable.client()  # the first connection died with the first restart
        for proc in workers:
            assert proc.proc.poll() is None, f"a worker died in an outage:\n{proc.log()}"
        fleet.wait_until(lambda: drained(r, "outage"), "the queue to drain after restarts", 40.0)
        assert fleet.stop_all(signal.SIGTERM) == [0, 0], fleet.logs()

        result = account(r, ids)
        print("\nRELIABILITY redis restarts: " + " ".join(
            f"outage_s={down:.2f} resume_after_restart_s={up:.2f}" for down, up in figures)
            + f" {result.summary()} lost_ids={result.lost}")
        assert result.lost == [], fleet.logs()
        assert result.failed == {}
        assert worker_leftovers(r, "outage") == {}
        for proc in workers:  # each outage is logged once, and so is each recovery
            log = proc.log()
            assert log.count("redis unavailable, retrying") >= OUTAGES, log[-3000:]
            assert log.count("redis reachable again") >= OUTAGES, log[-3000:]
            # After the last outage began: reconnected, kept working, stopped cleanly.
            after_outages = log[log.rindex("redis unavailable, retrying"):]
            assert "redis reachable again" in after_outages
            assert "job done" in after_outages, "no job was done after reconnecting"
            assert "worker stopped" in after_outages
    finally:
        fleet.close()
        r.close()


def term_during_outage(durable: DurableRedis, fleet: Fleet, ids: list[str]) -> tuple[int, str]:
    """Stop Redis under load, then TERM the worker while Redis is still down.

    Returns the worker's exit code and log. Redis stays down.
    """
    r = durable.client()
    push_records(r, "outage", ids, sleep_ms=lambda i: 2)
    worker = fleet.start()
    wait_until(lambda: r.scard(DONE) >= 200, "the worker to get going", 20.0)
    r.close()
    durable.shutdown()
    worker.wait_log("redis unavailable, retrying")
    fleet.stop_all(signal.SIGTERM, timeout=30.0)
    return int(worker.proc.returncode), str(worker.log())


TERM_OUTAGE_ARGS = ("--queues", "outage", "--concurrency", "2", "--interval", "0.1",
                    "--shutdown-timeout", "1", "--heartbeat-interval", "0.5",
                    "--prune-after", "5")


def test_term_while_redis_is_down_exits_cleanly_and_loses_no_job(durable: DurableRedis) -> None:
    ids = [f"d{i}" for i in range(1500)]
    fleet = Fleet(durable.url, *TERM_OUTAGE_ARGS)
    try:
        code, log = term_during_outage(durable, fleet, ids)
        # It cannot unregister: one line saying so and a non-zero exit, no traceback, and
        # retries that back off (not thousands of lines while the slots wait to stop).
        assert code != 0
        assert "Traceback" not in log, log[-3000:]
        assert log.count("redis unavailable") < 100, log[-3000:]
        durable.start()
        r = durable.client()
        # The stopped worker could not tell Redis what it held; the next worker on this host
        # finds its pid dead at start-up and gives those jobs back.
        fleet.start()
        fleet.wait_until(lambda: drained(r, "outage"), "a new worker to drain the queue", 30.0)
        assert fleet.stop_all(signal.SIGTERM) == [0]
        result = account(r, ids)
        print(f"\nRELIABILITY TERM while Redis is down: first worker exit code={code} "
              f"{result.summary()}")
        assert result.lost == []
        assert result.failed == {}
        assert worker_leftovers(r, "outage") == {}
        r.close()
    finally:
        fleet.close()


class ReplyCutter:
    """A TCP proxy to Redis that can drop one claim's reply.

    Armed, it lets a request containing ``EVALSHA`` through to Redis and, if the reply is a
    successful claim (``*4`` then ``:1``: the script took a job), does not forward it: Redis
    ran the claim, the worker never hears of it. It then closes both sides, or with ``hold``
    keeps the connection open and silent (a reply that is late, as far as the worker knows)
    until :attr:`release` is set. ``skip`` successful claims are let through first.
    """

    CLAIM_REPLY = b"*4\r\n:1\r\n"

    def __init__(self, target_port: int, hold: bool = False, skip: int = 0) -> None:
        self.target_port = target_port
        self.hold = hold
        self.skip = skip
        self.release = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.armed = threading.Event()
        self.cut = threading.Event()
        self.closed = False
        threading.Thread(target=self._accept, name="cutter", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        claim_sent = muted = False
        try:
            while not self.closed and not (muted and self.release.is_set()):
                ready, _, _ = select.select([client, server], [], [], 0.05)
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    claim_sent = b"EVALSHA" in data
                    server.sendall(data)
                if server in ready:
                    data = server.recv(65536)
                    if not data:
                        return
                    is_claim = claim_sent and data.startswith(self.CLAIM_REPLY)
                    if is_claim and self.armed.is_set() and self.skip:
                        self.skip -= 1
                    elif is_claim and self.armed.is_set():
                        self.armed.clear()
                        self.cut.set()
                        if not self.hold:
                            return  # the reply is dropped; the finally closes both sides
                        muted = True
                    if not muted:
                        client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def test_claim_reply_lost_on_a_cut_connection_loses_no_job() -> None:
    server = RedisServer()
    cutter = ReplyCutter(server.port)
    url = f"redis://127.0.0.1:{cutter.port}/0"
    fleet = Fleet(url, "--queues", "cut", "--interval", "0.1")
    r = server.client()
    try:
        fleet.start().wait_registered(1)
        ids = ["first", "second", "third", "fourth"]
        cutter.armed.set()
        push_records(r, "cut", ids)
        wait_until(cutter.cut.is_set, "the proxy to cut a claim's reply", 10.0)
        # Let the worker reconnect and work everything it can see.
        fleet.wait_until(lambda: drained(r, "cut") and r.scard(DONE) >= len(ids) - 1,
                         "the queue to drain", 10.0)
        assert fleet.stop_all(signal.SIGTERM) == [0]
        result = account(r, ids)
        print(f"\nRELIABILITY lost claim reply: {result.summary()} lost_ids={result.lost}")
        assert result.lost == []
    finally:
        fleet.close()
        cutter.close()
        r.close()
        server.stop()


def test_claim_in_flight_at_shutdown_is_given_back() -> None:
    server = RedisServer()
    cutter = ReplyCutter(server.port, hold=True)
    url = f"redis://127.0.0.1:{cutter.port}/0"
    fleet = Fleet(url, "--queues", "late", "--interval", "0.1", "--shutdown-timeout", "0.2")
    r = server.client()
    try:
        worker = fleet.start()
        worker.wait_registered(1)
        cutter.armed.set()
        push_records(r, "late", ["late"])
        wait_until(cutter.cut.is_set, "the proxy to hold a claim's reply", 10.0)
        # Redis ran the claim (the job is in the worker key); the worker has not heard yet.
        assert held_jobs(r) and r.llen(NS + "queue:late") == 0
        worker.send(signal.SIGTERM)
        worker.wait_exit(20.0)
        done = account(r, ["late"]).done
        queued = r.lrange(NS + "queue:late", 0, -1)
        print(f"\nRELIABILITY claim in flight at shutdown: exit={worker.proc.returncode} "
              f"given_back={len(queued)} done={len(done)} held={len(held_jobs(r))}")
        assert queued or done or held_jobs(r), "the claimed job was deleted"
    finally:
        fleet.close()
        cutter.close()
        r.close()
        server.stop()



_HANDSHAKE = {"hello", "client|setinfo", "client|setname", "select", "ping", "NULL"}


def working_clients(r: redis.Redis) -> dict[int, str]:
    """The server's clients that sent more than a connection handshake: id -> last command."""
    return {int(c["id"]): c["cmd"] for c in r.client_list() if c.get("cmd") not in _HANDSHAKE}


def test_claim_reply_lost_then_paused_loses_no_job() -> None:
    server = RedisServer()
    cutter = ReplyCutter(server.port, hold=True, skip=1)
    url = f"redis://127.0.0.1:{cutter.port}/0"
    fleet = Fleet(url, "--queues", "pause", "--interval", "0.1")
    r = server.client()
    try:
        worker = fleet.start()
        worker.wait_registered(1)
        cutter.armed.set()
        push_records(r, "pause", ["first", "second"])
        # "first" runs; the claim that finishes it and takes "second" gets no reply.
        wait_until(cutter.cut.is_set, "the proxy to hold the second claim's reply", 10.0)
        worker.send(signal.SIGUSR2)
        worker.wait_log("USR2 received")
        before = {int(c["id"]) for c in r.client_list()}
        cutter.release.set()  # the connection drops: the worker reconnects, and finds it paused
        # The slot's new connection has flushed the finished job (no other connection is new).
        wait_until(lambda: working_clients(r).keys() - before, "the paused worker's flush", 10.0)
        worker.send(signal.SIGCONT)
        push_records(r, "pause", ["third"])
        fleet.wait_until(lambda: r.sismember(DONE, "third"), "the third job", 10.0)
        assert fleet.stop_all(signal.SIGTERM) == [0]
        ids = ["first", "second", "third"]
        done = account(r, ids).done
        queued = {json.loads(item)["args"][0] for item in r.lrange(NS + "queue:pause", 0, -1)}
        print(f"\nRELIABILITY lost reply then USR2: done={sorted(done)} queued={sorted(queued)}")
        assert set(ids) - done - queued == set(), "a claimed job was overwritten"
    finally:
        fleet.close()
        cutter.close()
        r.close()
        server.stop()
