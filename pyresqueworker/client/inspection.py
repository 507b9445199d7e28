"""Reading workers and stats as ``Resque.workers`` / ``Resque.info`` / resque-web do (spec §7, §9).

Used through :class:`~pyresqueworker.Client` (``workers()``, ``working()``,
``heartbeats()``, ``info()``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional

from redis import Redis

from ..protocol import wire
from ._commands import Op, call, cmd, run, send
from ._failed_ops import Raw, decode_entry

__all__ = [
    "WorkerInfo", "as_text", "heartbeats_op", "info_op", "queue_names_op", "read_queue_names",
    "redis_id", "workers_op",
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


def workers_op(keys: wire.Keys) -> Op[list[WorkerInfo]]:
    """Every registered worker Ruby could parse (others are skipped), sorted by id (see
    :mod:`pyresqueworker.client._commands` for operations).

    Two round trips whatever the number of workers: ``SMEMBERS``, then one pipeline of
    ``MGET``s and an ``HMGET`` of the heartbeats.
    """
    ids = []
    for raw in (yield from call("SMEMBERS", keys.workers)):
        parsed = _parse_worker_id(raw)
        if parsed is not None:
            ids.append((as_text(raw) or "", parsed))
    if not ids:
        return []
    ids.sort(key=lambda pair: pair[0])
    calls = []
    for offset in range(0, len(ids), _WORKER_BATCH):
        batch: list[str] = []
        for text, _ in ids[offset : offset + _WORKER_BATCH]:
            batch += [
                keys.worker(text),
                keys.worker_started(text),
                keys.stat("processed", text),
                keys.stat("failed", text),
            ]
        calls.append(cmd("MGET", *batch))
    calls += [cmd("HMGET", keys.heartbeats, *(text for text, _ in ids)),
              cmd("GET", keys.pause_all), cmd("SMEMBERS", keys.paused_workers)]
    *batches, heartbeats, pause_all, paused_ids = yield from send(*calls)
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


def heartbeats_op(keys: wire.Keys) -> Op[dict[str, str]]:
    """``workers:heartbeat`` as ``{worker id: time text}``, dead workers included."""
    found = yield from call("HGETALL", keys.heartbeats)
    return {as_text(field) or "": as_text(value) or "" for field, value in found.items()}


def is_pause_value(value: Optional[Raw]) -> bool:
    """Ruby's ``paused?``: the ``pause-all-workers`` value, stripped and downcased, is true."""
    text = as_text(value)
    return text is not None and text.strip().lower() == "true"


def read_queue_names(redis: Redis, keys: wire.Keys) -> list[str]:
    """Every queue there is, sorted: the ``queues`` set (what ``Resque.enqueue`` and
    ``Resque.queues`` use) and every ``queue:<name>`` list, since a job pushed by hand
    (``redis-cli RPUSH resque:queue:low ...``) is waiting all the same without the set
    knowing its queue. (One ``SCAN`` over the namespace's ``queue:`` keys.)"""
    return run(redis, queue_names_op(keys))


def queue_names_op(keys: wire.Keys) -> Op[list[str]]:
    """The operation behind :func:`read_queue_names`."""
    names = {as_text(name) or "" for name in (yield from call("SMEMBERS", keys.queues))}
    prefix = keys.queue("")
    pattern = _glob_escape(prefix) + "*"
    cursor = 0
    while True:
        cursor, found = yield from call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000,
                                        "TYPE", "list")
        for key in found:
            name = (as_text(key) or "")[len(prefix):]
            if name and ":" not in name:
                names.add(name)
        if int(cursor) == 0:
            return sorted(names)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def info_op(keys: wire.Keys, server: str) -> Op[dict[str, Any]]:
    """The fields of ``Resque.info``: pending, processed, queues, workers, working, failed,
    servers and environment (``server`` is :func:`redis_id`'s text). Queues are those of
    :func:`read_queue_names`, so jobs pushed without the ``queues`` set count as pending too."""
    queue_names = yield from queue_names_op(keys)
    processed, failed, *sizes = yield from send(
        cmd("GET", keys.stat("processed")), cmd("LLEN", keys.failed),
        *(cmd("LLEN", keys.queue(name)) for name in queue_names))
    workers = yield from workers_op(keys)
    return {
        "pending": sum(int(size) for size in sizes),
        "processed": _ruby_to_i(processed),
        "queues": len(queue_names),
        "workers": len(workers),
        "working": sum(1 for worker in workers if worker.state == "working"),
        "failed": int(failed),
        "servers": [server],
        "environment": os.environ.get("RAILS_ENV")
        or os.environ.get("RACK_ENV")
        or "development",
    }


def redis_id(redis: Any) -> str:
    """redis-rb's ``Client#id``, ``redis://<host:port or socket path>/<db>``, never
    credentials; for a blocking or an asyncio client."""
    kwargs = redis.connection_pool.connection_kwargs
    host, port = kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
    location = kwargs.get("path") or f"{host}:{port}"
    return f"redis://{location}/{kwargs.get('db', 0)}"
