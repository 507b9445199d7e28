"""The waits between the soak's phases: workers registered, queues drained, keys settled.

Each polls a condition against a deadline and says how long it took; none sleeps a fixed time
hoping it is enough.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from functools import partial
from typing import Callable

import redis

from soakkit.fleet import Fleet, queues_of
from soakkit.leaks import KeyProblem, key_problems
from soakkit.monitor import Census, key_census
from soakkit.ruby import QUEUE as RUBY_QUEUE
from soakkit.servers import GROUPS, Servers

__all__ = ["drain", "log_signs", "settle_keys", "wait_registered"]

# Lines no worker log should show (the fault tests' list): each is reported with its count.
SIGNS = ("Traceback", "Exception in thread", "slot thread ended",
         "removed by another worker's prune",
         "sent ahead of a claim failed")  # a tracked job's end refused while its claim ran


def _poll(condition: Callable[[], bool], timeout: float, every: float = 0.25) -> float:
    """Seconds until ``condition()`` held (Redis errors: not yet); inf past ``timeout``."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() - started > timeout:
            return math.inf
        time.sleep(every)


def _with_data(servers: Servers, group: str, read: Callable[[redis.Redis], bool]) -> bool:
    conn = servers.data(group)
    try:
        return read(conn)
    finally:
        conn.close()


def wait_registered(servers: Servers, fleet: Fleet, timeout: float = 60.0) -> float:
    """Until every slot of every worker process is in its Redis's ``workers`` set."""
    def ready(group: str) -> bool:
        return _with_data(servers, group, lambda c: int(c.scard("resque:workers"))
                          >= fleet.live_slots(group) > 0)

    return _poll(lambda: all(ready(g) for g in GROUPS), timeout)


def _settled(conn: redis.Redis, group: str) -> bool:
    with conn.pipeline(transaction=False) as pipe:
        for queue in (*queues_of(group), RUBY_QUEUE):  # (the Ruby worker's: group a only)
            pipe.llen(f"resque:queue:{queue}")
        pipe.zcard("resque:delayed_queue_schedule")
        lengths = pipe.execute()
    if any(int(n) for n in lengths):
        return False
    return not any(not key.endswith(b":started")
                   for key in conn.scan_iter(match="resque:worker:*", count=1000))


def drain(servers: Servers, timeout: float) -> float:
    """Until, in every group, nothing is queued, scheduled or held, twice 0.5 s apart (a job
    between two steps of a retry or a recovery is in one of those places at every moment)."""
    def settled() -> bool:
        return all(_with_data(servers, g, partial(_settled, group=g)) for g in GROUPS)

    def twice() -> bool:
        if not settled():
            return False
        time.sleep(0.5)
        return settled()

    return _poll(twice, timeout)


def census(servers: Servers) -> dict[str, Census]:
    found = {}
    for group in GROUPS:
        conn = servers.data(group)
        try:
            found[group] = key_census(conn)
        finally:
            conn.close()
    return found


def settle_keys(servers: Servers, fleet: Fleet, baseline: dict[str, Census],
                timeout: float) -> tuple[dict[str, Census], list[KeyProblem], float]:
    """Until no key problem is left (dead workers are pruned at a live worker's heartbeat, so
    their keys may outlive the drain by a second or two). Returns the last census, its
    problems and how long it took (inf: problems remained at the deadline)."""
    last: dict[str, Census] = {}
    problems: list[KeyProblem] = []

    def clean() -> bool:
        nonlocal last, problems
        last = census(servers)
        problems = [p for g in GROUPS
                    for p in key_problems(g, baseline[g], last[g], fleet.live_slots(g))]
        return not problems

    took = _poll(clean, timeout, every=1.0)
    return last, problems, took


_AHEAD_ERROR = re.compile(r"sent ahead of a claim failed .*?error=(\S+(?: \S+){0,3})")


def log_signs(fleet: Fleet) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in fleet.logs():
        text = path.read_text(encoding="utf-8", errors="replace")
        for sign in SIGNS:
            found[sign] += text.count(sign)
        for error in _AHEAD_ERROR.findall(text):  # which error refused a tracked job's end
            found[f"  of which {error}"] += 1
    return +found
