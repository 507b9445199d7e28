"""Jobs whose failure meets Redis away at the moment the worker schedules their retry
(``--app retry_outage_jobs``; tests/test_retry_outage.py and tests/test_claim_orphan.py).

They record each run as :mod:`worker_jobs` does (``test:ran`` on ``REDIS_URL``), then break
something and fail, so the worker's retry settle is the first thing to meet the fault.
"""

from __future__ import annotations

import os
import threading
import time

import redis
from worker_jobs import JobError, _record

from pyresqueworker import job
from pyresqueworker.jobs.retry import Retry

# The soak's policy: two retries, 1 s apart, through the delayed queue.
POLICY = Retry(max=2, backoff="fixed", base=1)


@job("OomAtRetry", retry=POLICY)
def oom_at_retry(tag: str, oom_s: float) -> None:
    """Sets ``maxmemory`` to 1 byte (Redis answers every write OOM) for ``oom_s`` s, and
    fails."""
    _record("OomAtRetry", tag)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.config_set("maxmemory", 1)
    threading.Timer(oom_s, lambda: client.config_set("maxmemory", 0)).start()
    raise JobError("fails while Redis is out of memory")


@job("FailoverAtRetry", retry=POLICY)
def failover_at_retry(tag: str) -> None:
    """On its first run: ``SENTINEL FAILOVER`` (``TEST_SENTINEL_PORT``), and fails once the
    replica says it is master, so the retry is written while the old master still takes
    writes that the failover then discards. Later runs just fail."""
    _record("FailoverAtRetry", tag)
    data = redis.Redis.from_url(os.environ["REDIS_URL"])
    if data.incr(f"test:failover-runs:{tag}") == 1:
        sentinel = redis.Redis(port=int(os.environ["TEST_SENTINEL_PORT"]))
        sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
        replica = redis.Redis(port=int(os.environ["TEST_REPLICA_PORT"]))
        deadline = time.monotonic() + 20
        while replica.info("replication")["role"] != "master" and time.monotonic() < deadline:
            time.sleep(0.005)
    raise JobError("fails across a failover")
