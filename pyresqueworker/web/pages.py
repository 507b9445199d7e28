"""The data behind each dashboard page, read from Redis through :class:`Client`.

Every function returns a plain dict for its template. Values are Python text and numbers,
never markup: the templates escape everything. Stored bytes that do not decode are shown as
text, never raised, so one odd entry (written by any client) cannot break a page.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional, Union

from ..client._client import Client
from ..client.failed_queue import decode_entry
from ..client.history import History
from ..protocol import wire
from .format import (
    NO_CLASS,
    NOT_A_JOB,
    age_text,
    digest,
    job_view,
    json_text,
    local_time,
    raw_text,
    recorded_job_view,
    since,
)
from .meter import ThroughputMeter

__all__ = [
    "PER_PAGE", "delayed", "delayed_at", "failed", "history", "overview", "queue_detail",
    "queues", "schedules", "stats", "workers",
]

PER_PAGE = 20
PEEK_PER_PAGE = 50
DELAYED_PER_PAGE = 50
DELAYED_PREVIEW = 3
HISTORY_PER_PAGE = 50
BACKTRACE_LINES = 200
#: Above this many scheduled timestamps the overview does not sum every delayed list.
DELAYED_COUNT_LIMIT = 10_000
#: ``stat:*`` keys listed at most (there is one pair per worker that ever ran).
STAT_KEYS_LIMIT = 2_000
#: Resque's default prune interval: a heartbeat older than this marks a dead worker.
STALE_HEARTBEAT = 300.0

Raw = Union[bytes, str]


def _text(value: Optional[Raw]) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _int(value: Optional[Raw]) -> int:
    try:
        return int(_text(value).strip() or 0)
    except ValueError:
        return 0


def pages(total: int, start: int, per_page: int) -> dict[str, Any]:
    """Pagination links: the start index of the previous and next pages, if any."""
    return {
        "start": start,
        "end": min(total, start + per_page),
        "total": total,
        "prev": max(0, start - per_page) if start > 0 else None,
        "next": start + per_page if start + per_page < total else None,
    }


# -- overview and queues ------------------------------------------------------------------


def queue_rows(client: Client, now: float) -> list[dict[str, Any]]:
    """Every queue (those of the ``queues`` set, any ``queue:*`` list, every paused one):
    size, paused flag, latency, and whether the ``queues`` set holds it."""
    paused = set(client.paused_queues())
    names = sorted(set(client.queues()) | paused)
    pipe = client.redis.pipeline(transaction=False)
    for name in names:
        pipe.llen(client.keys.queue(name))
        pipe.lindex(client.keys.queue(name), 0)
    pipe.smembers(client.keys.queues)
    *replies, in_set = pipe.execute(raise_on_error=False)
    registered = {_text(name) for name in in_set} if isinstance(in_set, set) else set(names)
    rows = []
    for n, name in enumerate(names):
        size, head = replies[2 * n], replies[2 * n + 1]
        latency = None
        if isinstance(head, (bytes, str)):
            try:
                enqueued = job_view(wire.loads(head)).enqueued_at
            except wire.DecodeError:
                enqueued = None
            latency = None if enqueued is None else max(0.0, now - enqueued)
        rows.append({
            "name": name,
            "size": size if isinstance(size, int) else 0,
            "broken": isinstance(size, Exception),  # e.g. WRONGTYPE: the key is not a list
            "paused": name in paused,
            "latency": age_text(latency),
            "in_set": name in registered,
        })
    return rows


def overview(client: Client, meter: ThroughputMeter, now: float) -> dict[str, Any]:
    """Totals, throughput, the busiest queues and what is running now."""
    keys = client.keys
    pipe = client.redis.pipeline(transaction=False)
    pipe.get(keys.stat("processed"))
    pipe.get(keys.stat("failed"))
    pipe.llen(keys.failed)
    pipe.zcard(keys.delayed_schedule)
    processed, failed_total, failed_count, timestamps = pipe.execute()
    delayed_jobs: Optional[int] = None
    if int(timestamps) <= DELAYED_COUNT_LIMIT:
        delayed_jobs = client.delayed_count()
    queue_list = queue_rows(client, now)
    worker_list = workers(client, now)["workers"]
    working = [w for w in worker_list if w["state"] == "working"]
    paused_workers = sum(1 for w in worker_list if w["state"] == "paused")
    processed_count = _int(processed)
    return {
        "processed": processed_count,
        "failed_total": _int(failed_total),
        "failed_count": int(failed_count),
        "queues_count": len(queue_list),
        "pending": sum(q["size"] for q in queue_list),
        "workers_count": len(worker_list),
        "working_count": len(working),
        "paused_workers": paused_workers,
        "delayed_jobs": delayed_jobs,
        "delayed_timestamps": int(timestamps),
        "rate": meter.observe(processed_count, now),
        "all_paused": client.all_paused(),
        "busiest": sorted(queue_list, key=lambda q: -q["size"])[:10],
        "working": working[:20],
    }


def queues(client: Client, now: float) -> dict[str, Any]:
    """The queues page."""
    return {"queues": queue_rows(client, now), "all_paused": client.all_paused()}


def queue_detail(client: Client, name: str, start: int, now: float) -> dict[str, Any]:
    """One queue: its items from ``start``, decoded where they decode."""
    size = client.size(name)
    items = []
    for offset, raw in enumerate(client.peek_raw(name, start, PEEK_PER_PAGE)):
        try:
            view = job_view(wire.loads(raw))
            bad = None
        except wire.DecodeError as exc:
            view, bad = None, f"{exc}: {raw_text(raw, 2000)}"
        age = None if view is None or view.enqueued_at is None else now - view.enqueued_at
        items.append({"index": start + offset, "job": view, "bad": bad, "age": age_text(age)})
    return {
        "name": name,
        "size": size,
        "in_set": bool(client.redis.sismember(client.keys.queues, name)),
        "paused": name in client.paused_queues(),
        "items": items,
        "page": pages(size, start, PEEK_PER_PAGE),
    }


# -- workers ----------------------------------------------------------------------------


def workers(client: Client, now: float) -> dict[str, Any]:
    """Every registered worker, Ruby or Python, and its current job."""
    rows = []
    for info in client.workers():
        job = info.job or {}
        payload = job.get("payload")
        heartbeat_age = since(info.heartbeat, now)
        run_age = since(job.get("run_at"), now)
        rows.append({
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "queues": ", ".join(info.queues),
            "state": info.state,
            "queue": _text(job.get("queue")) if isinstance(job.get("queue"), str) else "",
            "job": job_view(payload) if payload is not None else None,
            "since": age_text(run_age) if job else "",
            "run_at": _text(job.get("run_at")) if isinstance(job.get("run_at"), str) else "",
            "started": info.started or "",
            "heartbeat": age_text(heartbeat_age),
            "stale": heartbeat_age is not None and heartbeat_age > STALE_HEARTBEAT,
            "processed": info.processed,
            "failed": info.failed,
        })
    return {"workers": rows}


# -- failures ---------------------------------------------------------------------------


def failure_row(index: int, raw: Raw) -> dict[str, Any]:
    """One entry of the failed list as the page shows it."""
    entry = decode_entry(raw)
    row: dict[str, Any] = {"index": index, "digest": digest(raw), "entry": entry is not None}
    if entry is None:
        row["raw"] = raw_text(raw)
        return row
    backtrace = entry.get("backtrace")
    if isinstance(backtrace, str):  # some clients store the trace as one text
        backtrace = backtrace.splitlines()
    lines = [json_text(line, 2000) if not isinstance(line, str) else line[:2000]
             for line in (backtrace if isinstance(backtrace, list) else [])]
    payload = entry.get("payload")
    attempts = entry.get("attempts")
    view = job_view(payload)
    row.update({
        "job": view,
        "has_class": view.class_name not in (NO_CLASS, NOT_A_JOB),
        # What client.requeue would refuse gets no Retry button.
        "retryable": _nonempty_text(entry.get("queue")) and isinstance(payload, dict)
        and _nonempty_text(payload.get("class")),
        "attempts": "" if attempts is None else _shown(attempts),
        "exception": _shown(entry.get("exception")),
        "error": _shown(entry.get("error")),
        "queue": _shown(entry.get("queue")) or "(no queue)",
        "worker": _shown(entry.get("worker")),
        "failed_at": _shown(entry.get("failed_at")),
        "retried_at": _shown(entry.get("retried_at")) if entry.get("retried_at") else "",
        "backtrace": lines[:BACKTRACE_LINES],
        "backtrace_cut": max(0, len(lines) - BACKTRACE_LINES),
    })
    return row


def _nonempty_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _shown(value: Any) -> str:
    if value is None:
        return ""
    return value[:20_000] if isinstance(value, str) else json_text(value, 2000)


def failed(client: Client, start: int) -> dict[str, Any]:
    """A page of the failed list, oldest first, each entry with its index and fingerprint."""
    total = client.failed_count()
    raws = client.redis.lrange(client.keys.failed, start, start + PER_PAGE - 1)
    return {
        "failures": [failure_row(start + n, raw) for n, raw in enumerate(raws)],
        "page": pages(total, start, PER_PAGE),
    }


# -- delayed jobs and schedules ---------------------------------------------------------


def _delayed_item(raw: Raw) -> dict[str, Any]:
    try:
        item = wire.loads(raw)
    except wire.DecodeError:
        return {"job": None, "queue": "", "raw": raw_text(raw, 2000)}
    queue = item.get("queue") if isinstance(item, dict) else None
    return {"job": job_view(item), "queue": queue if isinstance(queue, str) else "", "raw": ""}


def delayed(client: Client, start: int, now: float) -> dict[str, Any]:
    """Scheduled timestamps from ``start`` with their sizes and first items."""
    keys = client.keys
    total = int(client.redis.zcard(keys.delayed_schedule))
    stamps = client.delayed.delayed_timestamps(start, DELAYED_PER_PAGE)
    pipe = client.redis.pipeline(transaction=False)
    for ts in stamps:
        pipe.llen(keys.delayed(ts))
        pipe.lrange(keys.delayed(ts), 0, DELAYED_PREVIEW - 1)
    replies = pipe.execute(raise_on_error=False)
    rows = []
    for n, ts in enumerate(stamps):
        size, preview = replies[2 * n], replies[2 * n + 1]
        rows.append({
            "timestamp": ts,
            "at": local_time(ts),
            "due_in": age_text(ts - now) if ts > now else "due",
            "size": size if isinstance(size, int) else 0,
            "jobs": [_delayed_item(raw) for raw in preview] if isinstance(preview, list) else [],
        })
    return {"timestamps": rows, "page": pages(total, start, DELAYED_PER_PAGE)}


def delayed_at(client: Client, timestamp: int, start: int) -> dict[str, Any]:
    """Every item filed under one timestamp."""
    key = client.keys.delayed(timestamp)
    size = int(client.redis.llen(key))
    raws = client.redis.lrange(key, start, start + DELAYED_PER_PAGE - 1)
    return {
        "timestamp": timestamp,
        "at": local_time(timestamp),
        "items": [_delayed_item(raw) for raw in raws],
        "page": pages(size, start, DELAYED_PER_PAGE),
    }


def schedules(client: Client, now: float) -> dict[str, Any]:
    """Periodic schedules (runtime and code-declared) with their next firing."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    rows = []
    for schedule in client.schedules.list():
        try:
            next_run = local_time(schedule.next_run(moment).timestamp())
        except (ValueError, TypeError, OverflowError, KeyError):
            next_run = "-"
        rows.append({
            "name": schedule.name,
            "cron": schedule.cron,
            "class_name": schedule.class_name,
            "args": json_text(schedule.args, 2000),
            "queue": schedule.queue,
            "description": schedule.description,
            "enabled": schedule.enabled,
            "source": schedule.source,
            "last": schedule.last_enqueued_at or "-",
            "next": next_run if schedule.enabled else "-",
        })
    return {"schedules": rows}


# -- history and stats ------------------------------------------------------------------


def history(client: Client, job_id: str, class_name: str,
            before: Optional[float]) -> dict[str, Any]:
    """Recent job records, or those of one job id, or of one class."""
    store = History(client.redis, client.keys)
    if job_id:
        records = store.by_id(job_id)
    else:
        records = store.recent(HISTORY_PER_PAGE, class_name=class_name or None, before=before)
    rows = [{
        "finished_at": local_time(rec.finished_at),
        "outcome": rec.outcome,
        "duration": f"{rec.duration_ms:.1f} ms",
        "queue": rec.queue,
        "job": recorded_job_view(rec.class_name, rec.args, rec.job_id),
        "worker": rec.worker,
        "error": rec.error or "",
    } for rec in records]
    more = (not job_id and len(records) == HISTORY_PER_PAGE)
    return {
        "records": rows,
        "count": store.count(),
        "classes": store.classes(),
        "job_id": job_id,
        "class_name": class_name,
        "older": records[-1].finished_at if more else None,
    }


def stats(client: Client) -> dict[str, Any]:
    """Every ``stat:*`` key and a summary of Redis INFO."""
    names: list[str] = []
    for key in client.redis.scan_iter(match=client.keys.stat("*"), count=500):
        names.append(_text(key))
        if len(names) >= STAT_KEYS_LIMIT:
            break
    names.sort()
    values = client.redis.mget(names) if names else []
    info = client.redis.info()
    fields = [
        ("Redis version", "redis_version"), ("Mode", "redis_mode"),
        ("Uptime (s)", "uptime_in_seconds"), ("Connected clients", "connected_clients"),
        ("Memory used", "used_memory_human"), ("Memory peak", "used_memory_peak_human"),
        ("Max memory", "maxmemory_human"), ("Commands processed", "total_commands_processed"),
        ("Ops/s", "instantaneous_ops_per_sec"), ("Role", "role"),
    ]
    db = client.redis.connection_pool.connection_kwargs.get("db", 0)
    keyspace = info.get(f"db{db}")
    return {
        "stats": [(client.keys.strip(name), _text(value)) for name, value in zip(names, values)],
        "stats_cut": len(names) >= STAT_KEYS_LIMIT,
        "redis_info": [(label, str(info[key])) for label, key in fields if key in info],
        "keyspace": json_text(keyspace) if keyspace is not None else "-",
        "info": client.info(),
    }
