"""What the soak watches from outside the workers: their memory, and the keys in each Redis.

:class:`RssSampler` reads ``VmRSS`` from ``/proc/<pid>/status`` of every worker process once a
second, by pid: a process killed and replaced starts a fresh series.

:func:`key_census` counts a Redis's keys by *pattern*: the host name, 40-hex digests and numbers
replaced (``resque:stat:processed:<host>:<n>-<n>:soak_a,soak_a_big``,
``resque:pyresque:unique:<digest>``; a batch's 32 hex digits ``<id>``), a delayed item's JSON
folded into ``resque:timestamps:<item>``. It also notes which keys have no TTL, and the size of
the sets and hashes that list workers.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis

from soakkit.fleet import Fleet

__all__ = ["Census", "RssSampler", "key_census", "key_pattern"]

_HOST = socket.gethostname()
_SHA1 = re.compile(r"[0-9a-f]{40}")
_JOB_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")  # a batch's (or a job's) id
_NUMBER = re.compile(r"\d+")


class RssSampler(threading.Thread):
    """Samples the RSS (kB) of every worker process the fleet runs, until stopped."""

    def __init__(self, fleet: Fleet, every: float = 1.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.fleet, self.every = fleet, every
        self.samples: dict[int, list[tuple[float, int]]] = {}
        self.halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            self.sample()

    def sample(self) -> None:
        now = time.time()
        for pid in self.fleet.refresh():
            kb = _rss_kb(pid)
            if kb is not None:
                with self._lock:
                    self.samples.setdefault(pid, []).append((now, kb))

    def series(self, pid: int) -> list[tuple[float, int]]:
        with self._lock:
            return list(self.samples.get(pid, ()))

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:  # gone between the listing and the read
        return None
    return None


def key_pattern(key: str) -> str:
    if key.startswith("resque:timestamps:"):
        return "resque:timestamps:<item>"
    key = key.replace(_HOST, "<host>")
    key = _JOB_ID.sub("<id>", _SHA1.sub("<digest>", key))
    return _NUMBER.sub("<n>", key)  # no digit in "<digest>" or "<id>"


@dataclass
class Census:
    """Keys of one Redis at one moment, by pattern."""

    at: float
    counts: Counter[str] = field(default_factory=Counter)
    no_ttl: Counter[str] = field(default_factory=Counter)  # keys of the pattern without a TTL
    workers: int = 0  # members of resque:workers
    heartbeats: int = 0  # fields of resque:workers:heartbeat
    running_capped: int = 0  # fields of resque:pyresque:running-capped


def key_census(conn: redis.Redis) -> Census:
    census = Census(time.time())
    keys = [k.decode("utf-8", "replace") for k in conn.scan_iter(count=1000)]
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        with conn.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.ttl(key)
            ttls = pipe.execute()
        for key, ttl in zip(chunk, ttls):
            if int(ttl) == -2:  # gone since the scan
                continue
            pattern = key_pattern(key)
            census.counts[pattern] += 1
            if int(ttl) == -1:
                census.no_ttl[pattern] += 1
    census.workers = int(conn.scard("resque:workers"))
    census.heartbeats = int(conn.hlen("resque:workers:heartbeat"))
    census.running_capped = int(conn.hlen("resque:pyresque:running-capped"))
    return census
