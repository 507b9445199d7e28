"""The dashboard's time series, kept in Redis: per-minute and per-day samples of Resque's state.

Once a minute, one worker process of the whole fleet (the first whose ``SET NX`` on that
minute's claim key succeeds) samples ``stat:processed``, ``stat:failed`` and the depth and
head-job age of every queue of the ``queues`` set, and adds that sample to a sorted set scored
by its minute. The first sample of each UTC day also goes to a per-day sorted set. Nothing
happens per job: the counters Resque already keeps (Ruby workers' jobs included) are read, and
the number of jobs in a minute is the difference between two samples, worked out by the reader.

Keys, under ``<ns>pyresque:series:``: ``minutes`` (a day of samples), ``days`` (eight weeks),
``claim:<minute>`` (expires after three minutes). A sample is a small JSON object.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import redis

from ..protocol import wire
from ._queue_head import read_heads

__all__ = [
    "DAY",
    "MINUTE",
    "Bucket",
    "Sample",
    "SeriesStore",
    "SeriesWriter",
    "bucket_counts",
]

MINUTE = 60
DAY = 86_400
KEEP_MINUTES = 24 * 60  # minute samples kept: one day
KEEP_DAYS = 8 * 7  # day samples kept: eight weeks
MAX_QUEUES = 12  # queues recorded per sample, deepest first
CLAIM_TTL = 3 * MINUTE

@dataclass(frozen=True)
class Sample:
    """Resque's state at one moment: the two counters and each queue's depth and latency."""

    at: float  # epoch seconds
    processed: int
    failed: int
    # queue -> (depth, age of its oldest job in seconds; None when the job carries no time)
    queues: dict[str, tuple[int, Optional[float]]] = field(default_factory=dict)

    def to_json(self) -> str:
        return wire.dumps({
            "t": round(self.at, 3), "p": self.processed, "f": self.failed,
            "q": {name: [depth, None if age is None else round(age, 1)]
                  for name, (depth, age) in self.queues.items()},
        })

    @classmethod
    def from_json(cls, raw: bytes | str) -> Optional[Sample]:
        """The sample stored as ``raw``; ``None`` for anything malformed."""
        try:
            data = wire.loads(raw if isinstance(raw, bytes) else raw.encode())
            queues = {str(name): (int(value[0]), None if value[1] is None else float(value[1]))
                      for name, value in data.get("q", {}).items()}
            return cls(float(data["t"]), int(data["p"]), int(data["f"]), queues)
        except (wire.DecodeError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


class SeriesStore:
    """Reads and writes the series keys of one namespace."""

    def __init__(self, conn: redis.Redis, keys: wire.Keys) -> None:
        self.conn = conn
        self.keys = keys
        self.minutes_key = keys.own("series:minutes")
        self.days_key = keys.own("series:days")

    def claim_key(self, minute: int) -> str:
        return self.keys.own(f"series:claim:{minute}")

    def take_sample(self, now: float) -> Sample:
        """Read the counters and the deepest queues now: two pipelined round trips."""
        keys = self.keys
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.get(keys.stat("processed"))
            pipe.get(keys.stat("failed"))
            pipe.smembers(keys.queues)
            processed, failed, names = pipe.execute()
        queues = sorted(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                        for n in names)
        found = read_heads(self.conn, keys, queues, now)
        found.sort(key=lambda item: -item[1])
        return Sample(now, _int(processed), _int(failed),
                      {name: (depth, age) for name, depth, age in found[:MAX_QUEUES]})

    def write(self, sample: Sample) -> None:
        """Add ``sample`` to the minutes (and, if it is the day's first, the days), trimmed."""
        minute = int(sample.at // MINUTE) * MINUTE
        day = int(sample.at // DAY) * DAY
        member = sample.to_json()
        first_of_day = not self.conn.zcount(self.days_key, day, day)
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.zadd(self.minutes_key, {member: minute})
            pipe.zremrangebyscore(self.minutes_key, "-inf", f"({minute - KEEP_MINUTES * MINUTE}")
            if first_of_day:
                pipe.zadd(self.days_key, {member: day})
                pipe.zremrangebyscore(self.days_key, "-inf", f"({day - KEEP_DAYS * DAY}")
            pipe.execute()

    def minutes(self, since: float) -> list[Sample]:
        """Minute samples from ``since`` (epoch seconds) on, oldest first."""
        return self._read(self.minutes_key, int(since // MINUTE) * MINUTE)

    def days(self) -> list[Sample]:
        """The first sample of each stored UTC day, oldest first."""
        return self._read(self.days_key, 0)

    def _read(self, key: str, since: int) -> list[Sample]:
        raws: list[Any] = list(self.conn.zrangebyscore(key, since, "+inf"))
        samples = (Sample.from_json(raw) for raw in raws)
        return [s for s in samples if s is not None]

    def live(self, now: float) -> Sample:
        """The counters as they are now (no queues): closes the current bucket on charts."""
        processed, failed = self.conn.mget(self.keys.stat("processed"), self.keys.stat("failed"))
        return Sample(now, _int(processed), _int(failed))


class SeriesWriter:
    """A worker process's part in the series: at most one sample per minute for the fleet.

    :meth:`tick` is called by the housekeeping thread (once a second); in a minute it has not
    tried yet it sends one ``SET NX``, and only the process that wins it samples and writes.
    """

    def __init__(self, store: SeriesStore, owner: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        self._tried: Optional[int] = None

    def tick(self) -> bool:
        """Sample and write if this minute is new here and unclaimed; whether it wrote."""
        now = self.clock()
        minute = int(now // MINUTE) * MINUTE
        if minute == self._tried:
            return False
        won = self.store.conn.set(self.store.claim_key(minute), self.owner, nx=True,
                                  ex=CLAIM_TTL)
        self._tried = minute  # after the SET: a Redis outage retries the same minute
        if not won:
            return False
        self.store.write(self.store.take_sample(now))
        return True


class Bucket(NamedTuple):
    """Jobs counted in one bucket (``None``: no samples cover it)."""

    start: int  # epoch seconds
    processed: Optional[float]
    failed: Optional[float]


def bucket_counts(samples: Sequence[Sample], step: int, first: int,
                  last: int) -> list[Bucket]:
    """Jobs per bucket of ``step`` seconds from ``first`` to ``last`` (bucket starts).

    The jobs between two samples are the difference of their counters, spread evenly over the
    buckets from the first sample's up to the one before the second's (its own, when both fall
    in one bucket). A counter that went down (``stat:processed`` reset) leaves that stretch
    unknown, and so do buckets no pair of samples covers.
    """
    processed: dict[int, float] = {}
    failed: dict[int, float] = {}
    ordered = sorted(samples, key=lambda s: s.at)
    for older, newer in zip(ordered, ordered[1:]):
        start = int(older.at // step) * step
        end = max(start + step, int(newer.at // step) * step)
        done, bad = newer.processed - older.processed, newer.failed - older.failed
        if done < 0 or bad < 0:
            continue
        spread = (end - start) // step
        # Only the buckets asked for: a sample far off in time (a skewed clock) must not make
        # this walk every bucket in between.
        skip = max(0, -(-(first - start) // step))  # whole buckets before ``first``
        for bucket in range(start + skip * step, min(end, last + step), step):
            processed[bucket] = processed.get(bucket, 0.0) + done / spread
            failed[bucket] = failed.get(bucket, 0.0) + bad / spread
    return [Bucket(b, processed.get(b), failed.get(b)) for b in range(first, last + 1, step)]

