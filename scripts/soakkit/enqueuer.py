"""The soak's load: one thread per group keeps its queues topped up with a mix of jobs, and writes
each job's expected outcome to the ledger.

Topping up to a target depth (instead of a fixed rate) keeps every slot busy however fast the
workers go, so that "every slot claims again within 5 s of a fault's end" is measured on slots
that have work, and the backlog cannot grow without bound while a fault stalls the workers.

What an enqueue attempt becomes (:class:`soakkit.ledger.Enqueued` ``status``): a reply means
Redis took it (``accepted``) or, for a unique job, that one of its kind is queued
(``deduped``); an error reply means Redis did not apply it (``refused``: OOM, LOADING,
READONLY); a connection that fails mid-call leaves it ``uncertain``. In group ``b`` a tick ends
with ``WAIT 1``: a write no replica acknowledged may vanish in a failover, so the tick's
accepted jobs become ``uncertain`` (a job lost with its master's unreplicated writes is lost by
Redis, not by a worker).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import redis

from pyresqueworker import Client
from soakkit import ledger
from soakkit.fleet import queues_of
from soakkit.jobs import big_blob

__all__ = ["KINDS", "Enqueuer", "Kind"]


@dataclass(frozen=True)
class Kind:
    """One kind of job in the mix."""

    name: str
    cls: str
    weight: int
    expect: str  # "ok" or "fail"
    attempts: int = 0  # runs before a "fail" kind's single failure entry (0: no retries)


KINDS = (
    Kind("work", "SoakWork", 40, "ok"),
    Kind("async", "SoakAsync", 20, "ok"),
    Kind("big", "SoakBig", 2, "ok"),
    Kind("boom", "SoakBoom", 4, "fail"),
    Kind("doomed", "SoakDoomed", 3, "fail", attempts=3),
    Kind("flaky", "SoakFlaky", 5, "ok"),
    Kind("delayed", "SoakWork", 8, "ok"),
    Kind("unique", "SoakUnique", 12, "ok"),
    Kind("unique_in", "SoakUnique", 4, "ok"),
)
# Seconds between 1 MB jobs of one group, so memory and CPU stay modest. During the warm-up
# they come 6 times as often: a worker's RSS settles at the most 1 MB payloads it ever held at
# once (the allocator keeps what it grew to), and that peak should come before the baseline,
# not be counted as growth after it.
BIG_EVERY = 1.5
BIG_EVERY_WARMING = 0.25
UNIQUE_KEYS = 12  # per group: few enough that unique enqueues often find one queued
TICK = 0.05
# After a failover the queues must stay topped up, or a slot with nothing to claim looks slow
# to resume (a kill then measured 4.5 s). Two things stopped the refill for 11 s: the
# connection stays on the old master, which still says master and shows its stale, full queues
# until Sentinel demotes it (8-20 s later), so it is dropped once Sentinel names another; and
# the new master has no replica until then, so a tick waits at most WAIT_MS for one.
WAIT_MS = 100
FOLLOW_EVERY = 0.5  # seconds between asking where the master is (group b)


class Enqueuer(threading.Thread):
    """Keeps ``group``'s queues at ``depth`` jobs while ``active``; counts what it did."""

    def __init__(self, group: str, connect: Callable[[], redis.Redis],
                 ledger_conn: redis.Redis, rng: random.Random, depth: int,
                 wait_replicas: bool, master: Optional[Callable[[], int]] = None) -> None:
        super().__init__(name=f"enqueuer-{group}", daemon=True)
        self.group, self.connect, self.ledger = group, connect, ledger_conn
        self.master = master  # the port Sentinel names as master now (group b)
        self._followed = 0.0
        self.rng, self.depth, self.wait_replicas = rng, depth, wait_replicas
        self.halt = threading.Event()
        self.active = threading.Event()  # enqueue only while set (paused for each drain)
        self.warming = True  # the warm-up's mix (see BIG_EVERY_WARMING)
        self.counts: Counter[tuple[str, str]] = Counter()  # (kind, status) -> jobs
        self.errors: Counter[str] = Counter()  # Redis errors: expected under faults
        self.bugs: list[str] = []  # anything else
        self._next_id = 0
        self._last_big = 0.0
        self._conn: Optional[redis.Redis] = None
        self._client: Optional[Client] = None

    def stop(self) -> None:
        self.halt.set()
        self.join(30)

    def run(self) -> None:
        try:
            while not self.halt.wait(TICK):
                if self.active.is_set():
                    try:
                        self._tick()
                    except Exception as exc:  # a bug here: reported, and the run fails
                        self.bugs.append(f"{type(exc).__name__}: {exc}")
                        self._drop_client()
        finally:
            if self._conn is not None:
                self._conn.close()

    def _client_now(self) -> Client:
        if self._client is None:
            self._conn = self.connect()
            self._client = Client(self._conn)
        return self._client

    def _drop_client(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._client = None

    def _follow_master(self) -> None:
        """Drop a connection to a node that Sentinel no longer names as master."""
        if self.master is None or self._conn is None:
            return
        if time.monotonic() - self._followed < FOLLOW_EVERY:
            return
        self._followed = time.monotonic()
        connection: Any = self._conn.connection
        try:
            moved = connection is not None and connection.port != self.master()
        except (redis.RedisError, OSError, RuntimeError):
            return  # no Sentinel answered: keep going where we are
        if moved:
            self._drop_client()

    def _tick(self) -> None:
        main, big = queues_of(self.group)
        self._follow_master()
        records: list[ledger.Enqueued] = []
        try:
            client = self._client_now()
            with client.redis.pipeline(transaction=False) as pipe:
                pipe.llen(f"resque:queue:{main}")
                pipe.llen(f"resque:queue:{big}")
                queued = sum(int(n) for n in pipe.execute())
        except redis.RedisError as exc:
            self.errors[type(exc).__name__] += 1
            self._drop_client()
            return
        try:
            for _ in range(min(40, max(0, self.depth - queued))):
                records.append(self._enqueue_one(client))
                if records[-1].status in ("uncertain", "refused"):
                    break  # Redis is away or full: wait for the next tick
            if self.wait_replicas and any(r.status == "accepted" for r in records):
                self._wait_replica(client, records)
        finally:
            self._record(records)

    def _wait_replica(self, client: Client, records: list[ledger.Enqueued]) -> None:
        acked = 0  # a connection dropped mid-tick cannot vouch for the tick's writes
        if self._client is client:
            try:
                conn: Any = client.redis  # execute_command is untyped in redis-py
                acked = int(conn.execute_command("WAIT", 1, WAIT_MS))
            except redis.RedisError as exc:
                self.errors[type(exc).__name__] += 1
                self._drop_client()
        if acked < 1:
            for index, record in enumerate(records):
                if record.status == "accepted":
                    records[index] = replace(record, status="uncertain")

    def _draw(self) -> Kind:
        every = BIG_EVERY_WARMING if self.warming else BIG_EVERY
        kinds = [k for k in KINDS if k.name != "big" or time.monotonic() - self._last_big >= every]
        return self.rng.choices(kinds, weights=[k.weight for k in kinds])[0]

    def _enqueue_one(self, client: Client) -> ledger.Enqueued:
        kind = self._draw()
        self._next_id += 1
        job_id = f"{self.group}{self._next_id:08d}"
        sleep_ms = self.rng.randint(20, 120)
        main, big = queues_of(self.group)
        fails = self.rng.randint(1, 2) if kind.name == "flaky" else 0
        delay = self.rng.uniform(1.0, 4.0) if kind.name in ("delayed", "unique_in") else 0.0
        now = time.time()
        status = "accepted"
        try:
            if kind.name == "big":
                self._last_big = time.monotonic()
                client.enqueue_to(big, kind.cls, job_id, 20, big_blob(job_id))
            elif kind.name == "flaky":
                client.enqueue_to(main, kind.cls, job_id, sleep_ms, fails)
            elif kind.name == "delayed":
                client.enqueue_in(delay, kind.cls, job_id, sleep_ms, queue=main)
            elif kind.name == "unique":
                key = f"{self.group}-{self.rng.randrange(UNIQUE_KEYS)}"
                if not client.enqueue_unique_by_key(kind.cls, key, job_id, sleep_ms, queue=main):
                    status = "deduped"
            elif kind.name == "unique_in":
                key = f"{self.group}-{self.rng.randrange(UNIQUE_KEYS)}"
                if not client.enqueue_unique_in(delay, kind.cls, job_id, sleep_ms, queue=main,
                                                key=key):
                    status = "deduped"
            else:
                client.enqueue_to(main, kind.cls, job_id, sleep_ms)
        except (redis.BusyLoadingError, redis.ResponseError) as exc:
            status = "refused"  # an error reply: Redis did not apply the command
            self.errors[type(exc).__name__] += 1
        except redis.RedisError as exc:
            status = "uncertain"
            self.errors[type(exc).__name__] += 1
            self._drop_client()
        # resque-scheduler's timestamps are whole seconds: the job may not run before this one.
        due = float(int(now + delay)) if delay else 0.0
        return ledger.Enqueued(job_id, self.group, kind.name, kind.cls, kind.expect, status,
                               now, due=due, fails=fails, attempts=kind.attempts)

    def _record(self, records: list[ledger.Enqueued]) -> None:
        if not records:
            return
        pairs = [part for r in records for part in (r.job_id, r.to_json())]
        ledger.with_patience(lambda: self.ledger.hset(ledger.EXPECTED, items=pairs))
        for record in records:
            self.counts[(record.kind, record.status)] += 1
