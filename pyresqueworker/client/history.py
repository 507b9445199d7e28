"""Job history: what ran, when, how it ended and how long it took (``pyresque-work --history``).

Each finished job becomes one JSON record. A slot builds it in its job report (a thread slot
reports while its next claim's reply is on its way, so this costs the job nothing) and leaves
it in its process's buffer; the housekeeping thread writes the buffer every quarter second in
one pipeline: a sorted set by finish time, a sorted set per class, and, when the
payload carries an id (ActiveJob's ``job_id``, or a top-level ``"id"``), a short list per id.
Records older than the retention, or beyond the size cap, are dropped at each write; per-class
and per-id keys expire with the retention. History is best-effort: records still in the buffer
when a process is killed with ``kill -9`` are lost (a clean stop writes them).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import redis

from ..jobs.activejob import job_class, wrapped_job_data
from ..log import logger
from ..protocol import wire
from ..protocol.job import Job
from ..protocol.redis_errors import REDIS_ERRORS

__all__ = [
    "History",
    "HistoryBuffer",
    "HistoryRecord",
    "HistoryRecorder",
    "HistorySettings",
    "PendingRecord",
    "parse_duration",
]

# Payloads up to this size are kept whole in their record; larger ones only by size.
MAX_PAYLOAD_IN_RECORD = 4096

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"90m"``, ``"3600"`` -> seconds; ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 90m or 3600")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class HistorySettings:
    """How long and how many records to keep."""

    retention: float = 7 * 86400.0
    max_records: int = 100_000

    def __post_init__(self) -> None:
        if not self.retention > 0:
            raise ValueError("--history retention must be positive")
        if self.max_records < 1:
            raise ValueError("--history-max must be at least 1")


@dataclass(frozen=True)
class HistoryRecord:
    """One finished job."""

    finished_at: float  # epoch seconds
    outcome: str  # "success" | "failure" | "skipped" | "retried" | "timeout"
    duration_ms: float
    queue: str
    class_name: str
    worker: str
    job_id: Optional[str]
    error: Optional[str]
    args: Any  # decoded args, or None when the payload was too large or not JSON
    payload_bytes: int

    @classmethod
    def from_json(cls, raw: bytes | str) -> Optional[HistoryRecord]:
        try:
            data = wire.loads(raw if isinstance(raw, bytes) else raw.encode())
            payload = data.get("payload")
            args = payload.get("args") if isinstance(payload, dict) else None
            return cls(
                float(data["finished_at"]), str(data["outcome"]), float(data["duration_ms"]),
                str(data["queue"]), str(data["class"]), str(data["worker"]),
                data.get("job_id"), data.get("error"), args, int(data.get("payload_bytes", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``--json`` and the dashboard)."""
        return {
            "finished_at": self.finished_at, "outcome": self.outcome,
            "duration_ms": self.duration_ms, "queue": self.queue, "class": self.class_name,
            "worker": self.worker, "job_id": self.job_id, "error": self.error,
            "args": self.args, "payload_bytes": self.payload_bytes,
        }


def job_identity(job: Job) -> tuple[str, Optional[str]]:
    """(class shown in history, job id) of a job: ActiveJob's own class and ``job_id``."""
    payload = job.payload
    job_id: Any = payload.get("id") if isinstance(payload, dict) else None
    data = wrapped_job_data(payload)
    if data is not None:
        job_id = data.get("job_id", job_id)
    if isinstance(job_id, (int, float)) and not isinstance(job_id, bool):
        job_id = wire.dumps(job_id)
    return (job_class(payload) or job.class_name,
            job_id if isinstance(job_id, str) and job_id else None)


_OUTCOMES = {name: wire.dumps(name) for name in
             ("success", "failure", "skipped", "retried", "timeout")}
# Records a process holds while Redis cannot take them; beyond this the oldest are dropped.
BUFFER_LIMIT = 20_000


class PendingRecord(NamedTuple):
    """A record ready to write, and where it goes."""

    record: bytes  # UTF-8
    score: float  # finished at, epoch seconds
    class_key: str
    id_key: str  # "" when the job has no id


class HistoryRecorder:
    """Builds history records, caching the JSON of names it has seen."""

    def __init__(self, keys: wire.Keys) -> None:
        self.keys = keys
        self._json: dict[str, str] = {}
        self._class_keys: dict[str, str] = {}

    def _cached_json(self, text: str) -> str:
        encoded = self._json.get(text)
        if encoded is None:
            if len(self._json) > 10_000:  # a flood of class names must not grow it for ever
                self._json.clear()
            encoded = self._json[text] = wire.dumps(text)
        return encoded

    def record(self, job: Job, outcome: str, duration_ms: float, error: Optional[str],
               finished_at: float) -> PendingRecord:
        """The record of a finished job."""
        class_name, job_id = job_identity(job)
        raw = job.raw
        payload = raw.decode("utf-8") if job.payload is not None and \
            len(raw) <= MAX_PAYLOAD_IN_RECORD else "null"
        record = "".join((
            '{"finished_at":', repr(round(finished_at, 6)),
            ',"outcome":', _OUTCOMES.get(outcome) or wire.dumps(outcome),
            ',"duration_ms":', repr(round(duration_ms, 3)),
            ',"queue":', self._cached_json(job.queue),
            ',"class":', self._cached_json(class_name),
            ',"worker":', self._cached_json(job.worker_id),
            ',"job_id":', "null" if job_id is None else wire.dumps(job_id),
            ',"error":', "null" if error is None else wire.dumps(wire.writable_text(error)),
            ',"payload_bytes":', str(len(raw)), ',"payload":', payload, "}",
        ))
        class_key = self._class_keys.get(class_name)
        if class_key is None:
            if len(self._class_keys) > 10_000:
                self._class_keys.clear()
            class_key = self._class_keys[class_name] = self.keys.history_class(class_name)
        return PendingRecord(record.encode("utf-8"), finished_at, class_key,
                             self.keys.history_id(job_id) if job_id else "")


class HistoryBuffer:
    r"""A process's history records on their way to Redis.

    Slots :meth:`add` (a few microseconds, in the job report that a thread slot makes while
    its next claim's reply is on its way); the housekeeping thread :meth:`write`\ s them.
    """

    def __init__(self, keys: wire.Keys, settings: HistorySettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.settings = settings
        self.clock = clock
        self.recorder = HistoryRecorder(keys)
        self._pending: deque[PendingRecord] = deque(maxlen=BUFFER_LIMIT)

    def add(self, job: Job, outcome: str, duration_ms: float, error: Optional[str],
            finished_at: Optional[float] = None) -> None:
        """Build the record of a finished job and buffer it (thread-safe: deque appends are
        atomic). A record that cannot be built is logged and dropped: history never fails
        a job's report."""
        try:
            record = self.recorder.record(
                job, outcome, duration_ms, error,
                self.clock() if finished_at is None else finished_at)
        except Exception:
            logger.exception("could not build a history record", extra={
                "queue": job.queue, "worker": job.worker_id})
            return
        self._pending.append(record)

    def __len__(self) -> int:
        return len(self._pending)

    def write(self, conn: redis.Redis) -> int:
        """Write every buffered record in one pipeline, then trim; returns how many.

        On a Redis outage the records go back to the buffer and the error is raised; any other
        error drops the batch (and is raised, to be logged), so one bad record can never
        block the history for good.
        """
        batch: list[PendingRecord] = []
        while True:
            try:
                batch.append(self._pending.popleft())
            except IndexError:
                break
        if not batch:
            return 0
        try:
            self._send(conn, batch)
        except REDIS_ERRORS:
            self._pending.extendleft(reversed(batch))  # Redis is away: keep them for later
            raise
        return len(batch)

    def _send(self, conn: redis.Redis, batch: list[PendingRecord]) -> None:
        settings, keys = self.settings, self.keys
        cutoff = f"({self.clock() - settings.retention!r}"
        ttl = max(1, int(settings.retention))
        cap = settings.max_records
        by_class: dict[str, dict[bytes, float]] = {}
        by_id: dict[str, list[bytes]] = {}
        for item in batch:
            by_class.setdefault(item.class_key, {})[item.record] = item.score
            if item.id_key:
                by_id.setdefault(item.id_key, []).append(item.record)
        pipe = conn.pipeline(transaction=False)
        for key, members in [(keys.history, {i.record: i.score for i in batch}),
                             *by_class.items()]:
            pipe.zadd(key, members)
            pipe.zremrangebyscore(key, "-inf", cutoff)
            pipe.zremrangebyrank(key, 0, -cap - 1)
            if key != keys.history:
                # A class that stops running leaves no index behind once it is out of date.
                pipe.expire(key, ttl)
        for key, records in by_id.items():
            pipe.lpush(key, *records)
            pipe.ltrim(key, 0, 24)
            pipe.expire(key, ttl)
        pipe.execute()


class History:
    """Reads the job history that workers started with ``--history`` write."""

    def __init__(self, redis: redis.Redis, keys: wire.Keys) -> None:
        self.redis = redis
        self.keys = keys

    def recent(self, limit: int = 50, *, class_name: Optional[str] = None,
               before: Optional[float] = None) -> list[HistoryRecord]:
        """Newest first; ``before`` (epoch seconds, exclusive) pages further back."""
        key = self.keys.history_class(class_name) if class_name else self.keys.history
        top = f"({before!r}" if before is not None else "+inf"
        raw = self.redis.zrevrangebyscore(key, top, "-inf", start=0, num=max(0, limit))
        return _parse(raw)

    def by_id(self, job_id: str) -> list[HistoryRecord]:
        """Every recorded run of the job with this id (retries included), newest first."""
        return _parse(self.redis.lrange(self.keys.history_id(job_id), 0, -1))

    def count(self) -> int:
        return int(self.redis.zcard(self.keys.history))

    def classes(self) -> list[str]:
        """Classes with records, by name."""
        prefix = self.keys.history_class("")
        names = {
            (key.decode() if isinstance(key, bytes) else str(key))[len(prefix):]
            for key in self.redis.scan_iter(match=_glob_escape(prefix) + "*", count=500)
        }
        return sorted(names)


def _parse(raw: Iterable[Any]) -> list[HistoryRecord]:
    records = (HistoryRecord.from_json(item) for item in raw)
    return [record for record in records if record is not None]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
