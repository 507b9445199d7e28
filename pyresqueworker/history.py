"""Job history: what ran, when, how it ended and how long it took (``pyresque-work --history``).

Each finished job becomes one JSON record, written by the worker's claim script together
with the job's completion (no extra round trip): into a sorted set by finish time, a sorted
set per class, and, when the payload carries an id (ActiveJob's ``job_id``, or a top-level
``"id"``), a short list per id. Records older than the retention, or beyond the size cap, are
dropped as new ones arrive; per-class and per-id keys expire with the retention.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

import redis

from . import wire
from .activejob import JOB_WRAPPER
from .fetch import HistoryWrite
from .job import Job

__all__ = ["History", "HistoryRecord", "HistorySettings", "parse_duration"]

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
    class_name = job.class_name
    job_id: Any = None
    if isinstance(payload, dict):
        job_id = payload.get("id")
        args = payload.get("args")
        if class_name == JOB_WRAPPER and isinstance(args, list) and args \
                and isinstance(args[0], dict):
            class_name = str(args[0].get("job_class") or class_name)
            job_id = args[0].get("job_id", job_id)
    if isinstance(job_id, (int, float)) and not isinstance(job_id, bool):
        job_id = wire.dumps(job_id)
    return class_name, job_id if isinstance(job_id, str) and job_id else None


def history_write(keys: wire.Keys, settings: HistorySettings, job: Job, outcome: str,
                  duration_ms: float, error: Optional[str],
                  now: Optional[float] = None) -> HistoryWrite:
    """The record of a finished job, ready to go with its completion."""
    finished_at = time.time() if now is None else now
    class_name, job_id = job_identity(job)
    raw = job.raw
    payload = raw.decode("utf-8") if job.payload is not None and len(raw) <= \
        MAX_PAYLOAD_IN_RECORD else "null"
    record = (
        '{"finished_at":' + repr(round(finished_at, 6)) + ',"outcome":' + wire.dumps(outcome)
        + ',"duration_ms":' + repr(round(duration_ms, 3)) + ',"queue":' + wire.dumps(job.queue)
        + ',"class":' + wire.dumps(class_name) + ',"worker":' + wire.dumps(job.worker_id)
        + ',"job_id":' + wire.dumps(job_id) + ',"error":' + wire.dumps(error)
        + ',"payload_bytes":' + str(len(raw)) + ',"payload":' + payload + "}"
    )
    return HistoryWrite(
        record=record, score=finished_at, class_key=keys.history_class(class_name),
        id_key=keys.history_id(job_id) if job_id else "",
        cutoff=finished_at - settings.retention, max_records=settings.max_records,
        id_ttl=max(1, int(settings.retention)),
    )


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
