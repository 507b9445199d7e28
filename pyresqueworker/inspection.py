"""Reading workers and stats as ``Resque.workers`` / ``Resque.info`` / resque-web do (spec §7, §9).

Used through :class:`~pyresqueworker.client.Client` (``workers()``, ``working()``,
``heartbeats()``, ``info()``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional

from redis import Redis

from . import wire
from .failed_queue import Raw, decode_entry

__all__ = [
    "WorkerInfo", "as_text", "read_heartbeats", "read_info", "read_queue_names", "read_workers",
]

# Worker ids per pipelined MGET round when reading ``workers``; each id costs four keys.
_WORKER_BATCH = 250


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker as ``Resque.workers`` / resque-web show it.

    ``pid`` is Ruby's ``to_i`` of the id's pid part (``4242-1`` gives 4242). ``job`` is the
    decoded ``worker:<id>`` value, ``None`` when idle or undecodable; ``state`` is ``working``
    whenever that key holds a non-empty value, else ``paused`` when the global pause
    (``pause-all-workers``) is on or the worker was paused with USR2, else ``idle``.
    """

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    started: Optional[str]
    heartbeat: Optional[str]
    job: Optional[dict[str, Any]]
    processed: int
    failed: int
    state: str


def _ruby_to_i(value: Optional[Raw]) -> int:
    """Ruby's ``String#to_i``: leading (signed) digits, 0 for anything else or ``nil``."""
    if value is None:
        return 0
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def as_text(value: Optional[Raw]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")


def _parse_worker_id(raw: Raw) -> Optional[wire.WorkerId]:
    """The id as Ruby's ``Worker.find`` splits it, or ``None`` where Ruby would crash."""
    try:
        worker_id = wire.WorkerId.parse(raw if isinstance(raw, str) else raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    # Ruby's String#split drops trailing empty fields: "h:1:," has no queues and
    # Worker.new would raise NoQueueError.
    queues = list(worker_id.queues)
    while queues and not queues[-1]:
        queues.pop()
    if not queues:
        return None
    return wire.WorkerId(worker_id.host, worker_id.pid, tuple(queues))




def read_workers(redis: Redis, keys: wire.Keys) -> list[WorkerInfo]:
    """Every registered worker Ruby could parse (others are skipped), sorted by id.

    Two round trips whatever the number of workers: ``SMEMBERS``, then one pipeline of
    ``MGET``s and an ``HMGET`` of the heartbeats.
    """
    ids = []
    for raw in redis.smembers(keys.workers):
        parsed = _parse_worker_id(raw)
        if parsed is not None:
            ids.append((as_text(raw) or "", parsed))
    if not ids:
        return []
    ids.sort(key=lambda pair: pair[0])
    pipe = redis.pipeline(transaction=False)
    for offset in range(0, len(ids), _WORKER_BATCH):
        batch: list[str] = []
        for text, _ in ids[offset : offset + _WORKER_BATCH]:
            batch += [
                keys.worker(text),
                keys.worker_started(text),
                keys.stat("processed", text),
                keys.stat("failed", text),
            ]
        pipe.mget(batch)
    pipe.hmget(keys.heartbeats, [text for text, _ in ids])
    pipe.get(keys.pause_all)
    pipe.smembers(keys.paused_workers)
    *batches, heartbeats, pause_all, paused_ids = pipe.execute()
    all_paused = is_pause_value(pause_all)
    paused = {as_text(m) for m in paused_ids}
    values = [value for chunk in batches for value in chunk]
    result = []
    for n, (text, parsed) in enumerate(ids):
        job_raw, started, processed, failed = values[4 * n : 4 * n + 4]
        result.append(
            WorkerInfo(
                id=text,
                host=parsed.host,
                pid=_ruby_to_i(parsed.pid),
                queues=parsed.queues,
                started=as_text(started),
                heartbeat=as_text(heartbeats[n]),
                job=decode_entry(job_raw) if job_raw else None,
                processed=_ruby_to_i(processed),
                failed=_ruby_to_i(failed),
                state="working" if job_raw else (
                    "paused" if all_paused or text in paused else "idle"),
            )
        )
    return result


def read_heartbeats(redis: Redis, keys: wire.Keys) -> dict[str, str]:
    """``workers:heartbeat`` as ``{worker id: time text}``, dead workers included."""
    return {
        as_text(field) or "": as_text(value) or ""
        for field, value in redis.hgetall(keys.heartbeats).items()
    }


def is_pause_value(value: Optional[Raw]) -> bool:
    """Ruby's ``paused?``: the ``pause-all-workers`` value, stripped and downcased, is true."""
    text = as_text(value)
    return text is not None and text.strip().lower() == "true"


def read_queue_names(redis: Redis, keys: wire.Keys) -> list[str]:
    """Every queue there is, sorted: the ``queues`` set (what ``Resque.enqueue`` and
    ``Resque.queues`` use) and every ``queue:<name>`` list, since a job pushed by hand
    (``redis-cli RPUSH resque:queue:low ...``) is waiting all the same without the set
    knowing its queue. (One ``SCAN`` over the namespace's ``queue:`` keys.)"""
    names = {as_text(name) or "" for name in redis.smembers(keys.queues)}
    prefix = keys.queue("")
    for key in redis.scan_iter(match=_glob_escape(prefix) + "*", count=1000, _type="list"):
        name = (as_text(key) or "")[len(prefix):]
        if name and ":" not in name:
            names.add(name)
    return sorted(names)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def read_info(redis: Redis, keys: wire.Keys) -> dict[str, Any]:
    """The fields of ``Resque.info``: pending, processed, queues, workers, working, failed,
    servers and environment. Queues are those of :func:`read_queue_names`, so jobs pushed
    without the ``queues`` set count as pending too."""
    queue_names = read_queue_names(redis, keys)
    pipe = redis.pipeline(transaction=False)
    pipe.get(keys.stat("processed"))
    pipe.llen(keys.failed)
    for name in queue_names:
        pipe.llen(keys.queue(name))
    processed, failed, *sizes = pipe.execute()
    workers = read_workers(redis, keys)
    return {
        "pending": sum(int(size) for size in sizes),
        "processed": _ruby_to_i(processed),
        "queues": len(queue_names),
        "workers": len(workers),
        "working": sum(1 for worker in workers if worker.state == "working"),
        "failed": int(failed),
        "servers": [_redis_id(redis)],
        "environment": os.environ.get("RAILS_ENV")
        or os.environ.get("RACK_ENV")
        or "development",
    }


def _redis_id(redis: Redis) -> str:
    # redis-rb's Client#id: "redis://<host:port or socket path>/<db>", never credentials.
    kwargs = redis.connection_pool.connection_kwargs
    host, port = kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
    location = kwargs.get("path") or f"{host}:{port}"
    return f"redis://{location}/{kwargs.get('db', 0)}"
