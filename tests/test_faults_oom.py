"""Redis out of memory (``maxmemory`` + ``noeviction``) mid-drain: every slot waits, none dies.

Filling Redis makes every write of the claim script fail with ``OOM command not allowed``;
the slots must back off and, once memory is freed, all resume, with nothing lost or stranded.
A worker stopped while Redis refuses writes cannot unregister: it leaves its jobs where
recovery finds them (or back in their queue) and exits non-zero with one line.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest
import redis
from fault_helpers import FaultRun
from fault_servers import RedisNode, fill_memory, free_memory, start_maxmemory_redis
from worker_helpers import wait_until

pytestmark = pytest.mark.slow

JOBS = 1500


def fill_until_refused(client: redis.Redis) -> int:
    """Fill Redis until it refuses writes, and keep it refusing.

    A fill stops at the limit, and the refused write's own 100 KB buffer is freed with its
    refusal, so the next small write would fit again; ``maxmemory`` is then set just below
    what is used, so every write (the claim's included) is refused until memory is freed.
    """
    written = fill_memory(client)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used - 512 * 1024))
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("fill:probe", "x")
    return written


def free_all(client: redis.Redis) -> None:
    free_memory(client)
    client.config_set("maxmemory", "20mb")


@pytest.fixture
def small_redis() -> Iterator[RedisNode]:
    node = start_maxmemory_redis("20mb")
    yield node
    node.close()


def test_out_of_memory_mid_drain_loses_nothing_and_every_slot_resumes(
    small_redis: RedisNode, redis_url: str
) -> None:
    data = redis.Redis(port=small_redis.port)
    with FaultRun("oom", f"redis://127.0.0.1:{small_redis.port}/0", lambda: data, redis_url,
                  "--concurrency", "2") as run:
        ids = [f"m{i}" for i in range(JOBS)]
        run.begin(ids, sleep_ms=lambda i: 1 + i % 3, until=JOBS // 5)
        filler = redis.Redis(port=small_redis.port, decode_responses=True)
        assert fill_until_refused(filler) > 0
        stuck_at = run.done_count()
        # While Redis refuses writes no claim can go through; give the slots a few seconds of
        # OOM replies (every one of them backing off and retrying), then free the memory.
        threading.Event().wait(3.0)
        assert run.done_count() - stuck_at <= 4 * 2  # at most the jobs already running
        free_all(filler)
        run.verify(ids)
        for proc in run.workers:
            assert proc.log().count("redis unavailable, retrying") <= 1, proc.log()
            assert "redis reachable again" in proc.log()
    data.close()


def test_stop_while_redis_refuses_writes_leaves_the_jobs_for_recovery(
    small_redis: RedisNode, redis_url: str
) -> None:
    data = redis.Redis(port=small_redis.port)
    with FaultRun("oom-stop", f"redis://127.0.0.1:{small_redis.port}/0", lambda: data,
                  redis_url, "--concurrency", "2", "--shutdown-timeout", "0.5") as run:
        ids = [f"s{i}" for i in range(6)]
        run.push(ids, sleep_ms=lambda _i: 3000)  # long jobs: both slots busy when we stop
        worker = run.start()
        wait_until(lambda: len(run.held()) == 2, "two jobs running", 20)
        filler = redis.Redis(port=small_redis.port, decode_responses=True)
        fill_until_refused(filler)
        worker.send(signal.SIGTERM)
        code = worker.wait_exit(40)
        assert code != 0
        lines = [line for line in worker.log().splitlines() if line.strip()]
        assert "Traceback" not in worker.log()
        assert any("Redis" in line and "recover" in line for line in lines[-3:]), lines[-5:]
        # Nothing is lost: the running jobs went back to the queue (a script may push once
        # it has deleted) or stay in their worker keys, where a prune finds them.
        assert data.llen("resque:queue:faults") + len(run.held()) == len(ids)
        free_all(filler)
        run.start("--prune-after", "2", "--heartbeat-interval", "0.5")
        run.wait_settled(ids, timeout=60)
    data.close()
