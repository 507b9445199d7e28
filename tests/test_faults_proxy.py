"""Cut, black-holed and slow connections between workers and Redis, also during start-up.

The workers reach Redis through a TCP fault proxy (tests/fault_servers.py); the jobs record
themselves in the session's own Redis (the ledger), which the proxy never touches.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
import redis
from conftest import RedisServer
from fault_helpers import FaultRun, run_command
from fault_proxy import FaultProxy
from worker_helpers import wait_until, worker_env

pytestmark = pytest.mark.slow

JOBS = 1500


@pytest.fixture
def target() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def proxy(target: RedisServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(target.port)
    yield fault_proxy
    fault_proxy.close()


def fault_run(name: str, proxy: FaultProxy, target: RedisServer, ledger_url: str,
              *args: str, slots: int = 2) -> FaultRun:
    data = redis.Redis(port=target.port)
    return FaultRun(name, proxy.url(), lambda: data, ledger_url, "--concurrency", str(slots),
                    *args)


# A slot alone in its process polls for its claim's replies (protocol._spin) where slots
# sharing one sleep on them: both must ride out every fault.
SLOTS = pytest.mark.parametrize("slots", [1, 2], ids=["lone-slot-polling", "2-slots"])


@SLOTS
def test_every_connection_cut_mid_drain_loses_nothing(
    proxy: FaultProxy, target: RedisServer, redis_url: str, slots: int
) -> None:
    with fault_run("cut", proxy, target, redis_url, slots=slots) as run:
        ids = [f"c{i}" for i in range(JOBS)]
        run.begin(ids, sleep_ms=lambda i: 1 + i % 3)
        for fraction in (5, 3, 2):  # three cuts while the queue drains
            wait_until(lambda f=fraction: run.done_count() >= JOBS // f, "progress", 30)
            proxy.cut()
        acc = run.verify(ids)
        assert acc.duplicate_runs <= 3 * 4  # at most the jobs whose reply a cut lost


@SLOTS
def test_black_hole_then_heal_mid_drain_loses_nothing(
    proxy: FaultProxy, target: RedisServer, redis_url: str, slots: int
) -> None:
    with fault_run("black-hole", proxy, target, redis_url, slots=slots) as run:
        ids = [f"b{i}" for i in range(JOBS)]
        run.begin(ids, sleep_ms=lambda i: 1 + i % 3, until=JOBS // 4)
        proxy.blackhole(True)
        threading.Event().wait(2.0)  # nothing answers for a while...
        proxy.blackhole(False)  # ...then the network heals (black-holed links are cut)
        run.verify(ids)


@SLOTS
def test_slow_network_loses_nothing(
    proxy: FaultProxy, target: RedisServer, redis_url: str, slots: int
) -> None:
    with fault_run("latency", proxy, target, redis_url, slots=slots) as run:
        ids = [f"l{i}" for i in range(400)]
        run.push(ids)
        proxy.latency(0.02)
        run.start_sampling()
        run.start()
        wait_until(lambda: run.done_count() >= 100, "jobs done while slow", 60)
        proxy.latency(0.0)
        run.verify(ids)


def test_connections_cut_during_start_up_never_crash_the_worker(
    proxy: FaultProxy, target: RedisServer, redis_url: str
) -> None:
    rng = random.Random()
    with fault_run("start-up", proxy, target, redis_url) as run:
        for _ in range(4):
            proc = run.start(wait=False)
            # Cut everything once at a random moment of the start (connect, prune, register,
            # the slots' first claims).
            threading.Event().wait(rng.uniform(0.0, 1.2))
            proxy.cut()
            run.wait_registered(proc)
        refused = run.start(wait=False)
        proxy.refuse(True)  # a worker that starts while Redis refuses connections waits...
        threading.Event().wait(1.5)
        proxy.refuse(False)  # ...and comes up when it answers
        run.wait_registered(refused)
        ids = [f"s{i}" for i in range(200)]
        run.push(ids)
        run.verify(ids)


def test_unreachable_redis_ends_start_up_with_one_line(redis_url: str) -> None:
    with FaultProxy(1) as dead:  # a proxy to a closed port: every connection is dropped
        dead.refuse(True)
        done = run_command("--app", "reliability_jobs", "--queues", "q", "--redis", dead.url(),
                           "--connect-timeout", "1", env=worker_env(dead.url()))
    assert done.returncode == 1
    # A log line when the wait starts, then the one line the command ends with.
    lines = [line for line in done.stderr.splitlines() if line.startswith("pyresque-work:")]
    assert len(lines) == 1 and "connect-timeout" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
