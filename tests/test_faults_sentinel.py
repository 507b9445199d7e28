"""Sentinel failovers mid-drain: workers on ``redis+sentinel://`` follow the new master.

A master, one replica and three real Sentinels (tests/fault_servers.py). Workers must move to
the promoted replica without a dead thread, keep their heartbeats fresh there (a worker
started later must not prune them), lose no job, and run few jobs twice: the failover watch
stops claims the moment Sentinel starts promoting, so almost nothing is written to a master
that is about to be demoted. With ``min-replicas-to-write 1`` a demoted master refuses those
writes outright.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from fault_helpers import FaultRun
from fault_sentinel import SentinelGroup

pytestmark = pytest.mark.slow

JOBS = 2000


def current_master(group: SentinelGroup) -> Callable[[], redis.Redis]:
    """A bytes client on whichever node is master now (one client per port)."""
    clients: dict[int, redis.Redis] = {}

    def data() -> redis.Redis:
        port = group.master_port()
        if port not in clients:
            clients[port] = redis.Redis(port=port, socket_timeout=5)
        return clients[port]

    return data


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    sentinels = SentinelGroup()
    yield sentinels
    sentinels.close()


@pytest.fixture
def strict_group() -> Iterator[SentinelGroup]:
    sentinels = SentinelGroup(min_replicas=True)
    yield sentinels
    sentinels.close()


def sentinel_run(name: str, group: SentinelGroup, ledger_url: str, *args: str) -> FaultRun:
    return FaultRun(name, group.url, current_master(group), ledger_url, "--concurrency", "2",
                    *args)


def drain_through_failover(run: FaultRun, group: SentinelGroup,
                           fault: Callable[[SentinelGroup], None]) -> int:
    """Start 2 workers x 2 slots on a full queue, apply ``fault`` a fifth of the way in,
    wait for the new master; returns the old master's port."""
    # The replica has every job before the fault: a failover then loses none of them.
    run.begin(job_ids(run), sleep_ms=lambda i: 3 + i % 4, until=JOBS // 5, replicas=1)
    old = group.master_port()
    fault(group)
    group.wait_for_new_master(old)
    return old


def job_ids(run: FaultRun) -> list[str]:
    return [f"{run.name}-{i}" for i in range(JOBS)]


def heartbeats_follow(run: FaultRun) -> None:
    """A worker started on the new master with a short --prune-after prunes nobody live."""
    late = run.start("--prune-after", "3", "--heartbeat-interval", "0.5")
    run.wait_registered(late)  # verify() then checks every slot of every worker is registered


def test_master_killed_mid_drain(group: SentinelGroup, redis_url: str) -> None:
    with sentinel_run("kill9", group, redis_url) as run:
        drain_through_failover(run, group, lambda g: g.kill_master() and None)
        heartbeats_follow(run)
        run.verify(job_ids(run))


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_sentinel_failover_runs_few_jobs_twice(group: SentinelGroup, redis_url: str,
                                               execution: str) -> None:
    """In asyncio mode the slots are tasks that wait out the hold on one shared event."""
    with sentinel_run("failover", group, redis_url, "--execution", execution) as run:
        drain_through_failover(run, group, SentinelGroup.failover)
        heartbeats_follow(run)
        acc = run.verify(job_ids(run))
        assert acc.duplicated_jobs <= JOBS // 10, acc.summary()
        # Claims stopped the moment Sentinel started promoting, not when writes were refused.
        assert any("claims paused" in w.log() for w in run.workers)


def test_failover_with_min_replicas_to_write(strict_group: SentinelGroup,
                                             redis_url: str) -> None:
    with sentinel_run("min-replicas", strict_group, redis_url) as run:
        old = drain_through_failover(run, strict_group, SentinelGroup.failover)
        # Writes wait until the demoted master is attached to the new one as its replica.
        strict_group.wait_until_replica_of(old, strict_group.master_port())
        acc = run.verify(job_ids(run))
        assert acc.duplicated_jobs <= JOBS // 100, acc.summary()
