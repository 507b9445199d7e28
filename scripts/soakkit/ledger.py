"""The ledger: a Redis of its own, never faulted, where every run and every enqueue is written.

The soak's verdict rests on it, so it is kept apart from the Redis servers under fault: an OOM
window, a restart or a failover there cannot touch the record of what ran. The jobs
(``soakkit.jobs``, inside the workers) write a *start* event when a handler begins and an
*end* event when it returns or raises; the enqueuer writes what it enqueued and what it expects
of each job. Events are short ``|``-separated strings in one list (two ``RPUSH`` per run, cheap
enough for hundreds of runs a second; a worker id never contains ``|``).

This module is imported by the workers too, so it needs nothing but redis-py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Callable, Optional, TypeVar

import redis

__all__ = [
    "EVENTS", "EXPECTED", "FAILS", "Enqueued", "Run", "end_event", "read_expected",
    "read_runs", "start_event", "with_patience", "worker_pid",
]

EVENTS = "soak:events"  # list: "S|id|token|worker id|pid|time" and "E|id|token|outcome|time"
FAILS = "soak:fails"  # hash: job id -> completed failing runs (SoakFlaky decides by it)
EXPECTED = "soak:expected"  # hash: job id -> Enqueued as JSON

T = TypeVar("T")
_PATIENCE = 60.0  # seconds a ledger write is retried; the ledger is never faulted


def with_patience(write: Callable[[], T]) -> T:
    """Run ``write``, retrying connection errors for a while: on a machine as loaded as a soak
    makes it, a ledger reply can be late, and a lost record would read as a lost job."""
    deadline = time.monotonic() + _PATIENCE
    while True:
        try:
            return write()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_event(job_id: str, token: str, worker_id: str, pid: int, at: float) -> str:
    return f"S|{job_id}|{token}|{worker_id}|{pid}|{at:.6f}"


def end_event(job_id: str, token: str, outcome: str, at: float) -> str:
    return f"E|{job_id}|{token}|{outcome}|{at:.6f}"


def worker_pid(worker_id: str) -> int:
    """The worker process's pid in a Resque worker id, ``host:pid[-slot]:queues``.

    A ``--fork-per-job`` run happens in a child, but its job still names the parent's slot: a
    run is attributed to the process that held the job, which is the one a kill hits.
    """
    return int(worker_id.split(":")[1].split("-")[0])


@dataclass
class Run:
    """One run of a handler: its start, and its end if the handler got that far."""

    job_id: str
    token: str
    worker_id: str
    pid: int  # the worker process (see worker_pid)
    start: float
    end: Optional[float] = None
    outcome: Optional[str] = None  # "ok", "fail", or "cancel" (a BaseException)


def _events(conn: redis.Redis, chunk: int = 50_000) -> Iterator[str]:
    total = int(conn.llen(EVENTS))
    for first in range(0, total, chunk):
        for raw in conn.lrange(EVENTS, first, first + chunk - 1):
            yield raw.decode() if isinstance(raw, bytes) else str(raw)


def read_runs(conn: redis.Redis) -> dict[str, list[Run]]:
    """Every recorded run by job id, oldest start first."""
    by_token: dict[str, Run] = {}
    ends: list[tuple[str, str, float]] = []
    for event in _events(conn):
        fields = event.split("|")
        if fields[0] == "S":
            _, job_id, token, worker_id, _pid, started = fields
            by_token[token] = Run(job_id, token, worker_id, worker_pid(worker_id),
                                  float(started))
        else:
            ends.append((fields[2], fields[3], float(fields[4])))
    for token, outcome, ended in ends:
        run = by_token.get(token)
        if run is not None:
            run.end, run.outcome = ended, outcome
    runs: dict[str, list[Run]] = {}
    for run in sorted(by_token.values(), key=lambda r: r.start):
        runs.setdefault(run.job_id, []).append(run)
    return runs


@dataclass(frozen=True)
class Enqueued:
    """One job the enqueuer tried to enqueue, and what it expects of it.

    ``status``: ``accepted`` (Redis took it), ``deduped`` (a unique enqueue answered "one is
    already queued": the job does not exist), ``refused`` (an error reply such as OOM or
    LOADING: Redis did not apply it), ``uncertain`` (the connection failed mid-call, or a
    Sentinel group's replica never acknowledged it: it may or may not exist).
    ``expect``: ``ok`` (a run ends in success), ``fail`` (one failure entry, after
    ``attempts`` runs when the class retries).
    """

    job_id: str
    group: str
    kind: str
    cls: str
    expect: str
    status: str
    at: float
    due: float = 0.0  # delayed kinds: the epoch second before which it must not run
    fails: int = 0  # SoakFlaky: failing runs before it succeeds
    attempts: int = 0  # the failure entry's "attempts" (0: the class does not retry)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def read_expected(conn: redis.Redis) -> dict[str, Enqueued]:
    found: dict[str, Enqueued] = {}
    for job_id, raw in conn.hscan_iter(EXPECTED, count=5000):
        key = job_id.decode() if isinstance(job_id, bytes) else str(job_id)
        found[key] = Enqueued(**json.loads(raw))
    return found
