"""How soon a worker moves on after a fault ends: claims after a long black hole heals, and
the exit of a worker told to stop while its Redis is gone (issue 25's fault trials).

The black hole here is the harsh kind: connections open while it lasts stay dead after it
heals (their bytes were dropped and nothing resets them, as when a firewall or NAT forgot
them), while new connections work at once. Jobs record themselves in the session's Redis (the
ledger), which the proxy never touches. Run with ``-s`` to see the measured times.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from apps.reliability_jobs import DONE
from conftest import RedisServer
from fault_helpers import FaultRun
from fault_proxy import FaultProxy
from worker_helpers import WorkerProc, wait_until

pytestmark = pytest.mark.slow

OUTAGE = 20.0  # seconds: longer than every socket timeout a worker loop uses
RESUME_WITHIN = 1.5  # seconds after the heal (the aim is under 1 s; the rest is CI slack)
EXIT_WITHIN = 5.0  # seconds from TERM to exit with Redis gone (about 2.5 s here)


class StaleBlackHoleProxy(FaultProxy):
    """A black hole whose heal cuts nothing: links opened before or during it never carry a
    byte again (their data was dropped); links opened after the heal work."""

    def blackhole(self, on: bool) -> None:
        with self._lock:
            self._blackholed = on


@pytest.fixture
def target() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def fault_run(name: str, proxy: FaultProxy, target: RedisServer, ledger_url: str,
              *args: str) -> FaultRun:
    data = redis.Redis(port=target.port)
    return FaultRun(name, proxy.url(), lambda: data, ledger_url, *args)


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_idle_slots_claim_within_a_second_of_a_long_black_hole_healing(
    target: RedisServer, redis_url: str, execution: str
) -> None:
    """Idle slots sleep while queue watchers block on Redis; a black hole longer than the
    watchers' socket timeouts swallows their replies. Once it heals, jobs pushed then must be
    claimed at once, not after the timeouts of calls lost in the hole."""
    with StaleBlackHoleProxy(target.port) as proxy, fault_run(
            f"stale-black-hole-{execution}", proxy, target, redis_url, "--concurrency", "2",
            "--execution", execution, "--heartbeat-interval", "60", "--prune-after",
            "300") as run:
        run.start()
        ledger = redis.Redis.from_url(redis_url)
        threading.Event().wait(1.0)  # the slots are asleep, the watchers blocked
        proxy.blackhole(True)
        threading.Event().wait(OUTAGE)
        proxy.blackhole(False)
        healed = time.monotonic()
        ids = [f"h{i}" for i in range(50)]
        run.push(ids, sleep_ms=lambda _i: 2)
        wait_until(lambda: ledger.scard(DONE) > 0, "a job done after the heal", 40, 0.005)
        took = time.monotonic() - healed
        print(f"\nRESUME {execution}, idle, {OUTAGE:g} s stale black hole: first job done "
              f"{took:.2f} s after the heal")
        assert took < RESUME_WITHIN, f"first job {took:.2f} s after the heal\n{run.logs()}"
        run.verify(ids)


def stop_after_a_second(worker: WorkerProc, what: str) -> tuple[int, float, str]:
    """TERM ``worker`` a second from now: its exit code, the seconds it took, its log (with
    no traceback)."""
    threading.Event().wait(1.0)
    told = time.monotonic()
    worker.send(signal.SIGTERM)
    code = worker.wait_exit(60)
    took = time.monotonic() - told
    print(f"\nSTOP {what}: exit {code} after {took:.2f} s")
    log = worker.log()
    assert "Traceback" not in log, log
    return code, took, log


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_a_stop_does_not_wait_out_a_first_claim_lost_in_a_black_hole(
    target: RedisServer, redis_url: str, execution: str
) -> None:
    """The slots' first claims (a new connection, the script's load, the claim) are on the
    wire when Redis goes silent: a slow link (0.3 s round trips) keeps them there for about
    a second after the worker has started, and the black hole starts then. Told to stop, the
    worker gives up on those replies (the claim script leaves a claimed job in the worker
    key, where recovery finds it), not after their 10 s timeouts, each retried."""
    with FaultProxy(target.port) as proxy, fault_run(
            f"stop-first-claim-{execution}", proxy, target, redis_url, "--concurrency", "2",
            "--execution", execution) as run:
        proxy.latency(0.15)
        worker = run.start()
        wait_until(lambda: "worker started" in worker.log(), "the worker's start", 30, 0.005)
        proxy.blackhole(True)
        code, took, log = stop_after_a_second(worker, f"{execution}, first claims in a black hole")
        assert code == 1 and "Redis unreachable while stopping" in log, log
        assert took < EXIT_WITHIN, f"exit after {took:.2f} s\n{log}"


def test_a_stop_during_start_up_does_not_wait_out_a_silent_redis(
    target: RedisServer, redis_url: str
) -> None:
    """Redis goes silent once the worker has registered, while the rest of its start-up
    (slow here: 0.3 s round trips) is on the wire. Told to stop, it exits 1 with one line
    within seconds, not after each start-up call's timeouts and retries (its registration
    is pruned once it is gone)."""
    with FaultProxy(target.port) as proxy, fault_run(
            "stop-start-up", proxy, target, redis_url) as run:
        proxy.latency(0.15)
        worker = run.start()
        proxy.blackhole(True)
        code, took, log = stop_after_a_second(worker, "during start-up, Redis silent")
        assert "worker started" not in log, log
        [line] = [x for x in log.splitlines() if x.startswith("pyresque-work:")]
        assert code == 1 and "stopped while waiting for Redis" in line, log
        assert took < EXIT_WITHIN, f"exit after {took:.2f} s\n{log}"


@pytest.mark.parametrize("fault", ["refused", "black-hole", "none"])
def test_a_worker_told_to_stop_while_redis_is_gone_exits_within_seconds(
    target: RedisServer, redis_url: str, fault: str
) -> None:
    """TERM with Redis refusing or silent: the worker exits 1 with one line (its jobs are where
    recovery finds them) within seconds, not after the timeouts of retried calls. With Redis
    there, the stop is as before: exit 0, unregistered."""
    with FaultProxy(target.port) as proxy, fault_run(
            f"stop-{fault}", proxy, target, redis_url, "--concurrency", "2") as run:
        worker = run.start()
        wait_until(lambda: "worker started" in worker.log(), "the worker's start", 30, 0.01)
        if fault == "refused":
            proxy.refuse(True)
            proxy.cut()
        elif fault == "black-hole":
            proxy.blackhole(True)
        code, took, log = stop_after_a_second(worker, f"with Redis {fault}")
        if fault == "none":
            assert code == 0 and "worker stopped" in log
            assert target.client().smembers("resque:workers") == set()
            return
        assert code == 1, log
        [line] = [x for x in log.splitlines() if x.startswith("pyresque-work:")]
        assert "Redis unreachable while stopping" in line, log
        assert took < EXIT_WITHIN, f"exit after {took:.2f} s\n{log}"
