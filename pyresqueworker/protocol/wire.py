"""Resque's wire format: key names, JSON as Ruby writes it, time formats and worker ids.

The time formats live in :mod:`~pyresqueworker.protocol.times` and are re-exported here.

Everything that must match Ruby Resque byte for byte lives here, so the rest of the package
never formats a key, a timestamp or a JSON document by hand. References are to
``shared/resque-protocol.md`` (the spec) and, through it, to Resque's source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ._ruby_json import ENCODER as _ENCODER
from ._ruby_json import dumps
from .times import (
    failed_at,
    heartbeat_value,
    iso_utc,
    parse_time,
    resque_retry_failed_at,
    run_at,
    started_at,
)

__all__ = [
    "DEFAULT_NAMESPACE", "DecodeError", "Keys", "WorkerId", "dumps", "encode_delayed_item",
    "encode_job", "failed_at", "failure_entry", "heartbeat_value", "iso_utc", "loads",
    "parse_time", "resque_retry_failed_at", "run_at", "started_at", "with_fields",
    "worker_value", "writable_text",
]

DEFAULT_NAMESPACE = "resque:"


def normalize_namespace(namespace: str) -> str:
    """Return the key prefix for a namespace: ``resque`` and ``resque:`` both give ``resque:``.

    Ruby's redis-namespace joins with ``:``; goworker's flag carries the colon. Accept both.
    """
    if not namespace:
        raise ValueError("the namespace must not be empty")
    return namespace if namespace.endswith(":") else namespace + ":"


def has_hash_tag(namespace: str) -> bool:
    """Whether every key under ``namespace`` hashes to one Redis Cluster slot: the namespace
    holds a non-empty ``{tag}`` (Redis hashes only the first such tag of a key)."""
    start = namespace.find("{")
    end = namespace.find("}", start + 1)
    return start >= 0 and end > start + 1


class Keys:
    """Every Redis key Resque, resque-scheduler and this package use, under one namespace.

    ``{resque}:`` works as a namespace for Redis Cluster: every key then hashes to one slot,
    which the Lua claim script needs.
    """

    __slots__ = ("ns",)

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.ns = normalize_namespace(namespace)

    def __repr__(self) -> str:
        return f"Keys({self.ns!r})"

    # Resque core (spec §2)
    @property
    def queues(self) -> str:
        return self.ns + "queues"

    def queue(self, name: str) -> str:
        return self.ns + "queue:" + name

    @property
    def workers(self) -> str:
        return self.ns + "workers"

    def worker(self, worker_id: str) -> str:
        return self.ns + "worker:" + worker_id

    def worker_started(self, worker_id: str) -> str:
        return self.ns + "worker:" + worker_id + ":started"

    @property
    def heartbeats(self) -> str:
        return self.ns + "workers:heartbeat"

    @property
    def prune_lock(self) -> str:
        return self.ns + "pruning_dead_workers_in_progress"

    def stat(self, name: str, worker_id: Optional[str] = None) -> str:
        """``stat:processed`` / ``stat:failed``, optionally per worker."""
        key = self.ns + "stat:" + name
        return key if worker_id is None else key + ":" + worker_id

    @property
    def failed(self) -> str:
        return self.ns + "failed"

    @property
    def pause_all(self) -> str:
        return self.ns + "pause-all-workers"

    # resque-scheduler (spec §15)
    @property
    def delayed_schedule(self) -> str:
        return self.ns + "delayed_queue_schedule"

    def delayed(self, timestamp: int) -> str:
        return self.ns + "delayed:" + str(int(timestamp))

    def delayed_member(self, timestamp: int) -> str:
        """The member stored in a ``timestamps:`` set (no namespace, as Ruby writes it)."""
        return "delayed:" + str(int(timestamp))

    def timestamps(self, encoded_item: str) -> str:
        return self.ns + "timestamps:" + encoded_item

    @property
    def scheduler_master_lock(self) -> str:
        # Ruby builds "<namespace>:resque_scheduler_master_lock" and sends it through the
        # already-namespaced client, so the namespace appears twice (spec §15.4).
        return self.ns + self.ns + "resque_scheduler_master_lock"

    # This package's own keys, kept under a sub-prefix Ruby never touches.
    def own(self, suffix: str) -> str:
        return self.ns + "pyresque:" + suffix

    @property
    def paused_queues(self) -> str:
        return self.own("paused-queues")

    @property
    def paused_workers(self) -> str:
        """Set of worker ids paused by USR2 (published by their housekeeping thread)."""
        return self.own("paused-workers")

    def raw_payload(self, worker_id: str) -> str:
        """Bytes of a claimed job that is not a UTF-8 JSON object (kept out of worker keys)."""
        return self.own("raw:" + worker_id)

    @property
    def concurrency_caps(self) -> str:
        """Hash class -> max_concurrency, written by workers from their registries."""
        return self.own("concurrency")

    @property
    def running_capped(self) -> str:
        """Hash worker id -> class, for the capped jobs running now."""
        return self.own("running-capped")

    def unique(self, digest: str) -> str:
        """An ``enqueue_unique`` lock, released when a worker starts the job."""
        return self.own("unique:" + digest)

    @property
    def history(self) -> str:
        """Job history: a sorted set of records by finish time."""
        return self.own("history")

    def history_class(self, class_name: str) -> str:
        return self.own("history:class:" + class_name)

    def history_id(self, job_id: str) -> str:
        return self.own("history:id:" + job_id)

    def claim_seq(self, worker_id: str) -> str:
        """Sequence number of a slot's last claim call (to resolve a lost reply)."""
        return self.own("seq:" + worker_id)

    def strip(self, key: str) -> str:
        """The key without the namespace, as ``Resque.keys`` shows it."""
        return key[len(self.ns) :] if key.startswith(self.ns) else key


# ---------------------------------------------------------------------------------------
# JSON as Ruby's MultiJson (Oj or the json gem) writes it (spec §1.2).


class DecodeError(ValueError):
    """A payload that Resque could not decode (Ruby: Resque::Helpers::DecodeException)."""




_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: loads is per job


def loads(data: bytes | str) -> Any:
    """Decode a payload as Ruby's JSON would; raise :class:`DecodeError` where Ruby raises.

    Bytes must be valid UTF-8 and ``NaN``/``Infinity`` are refused, as by the json gem.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = _DECODER.decode(text)
        if "\\u" in text and _SURROGATE_ESCAPE.search(text):
            # An unpaired \ud800 decodes to a string no UTF-8 encoder (Ruby's either) accepts.
            _ENCODER.encode(value).encode("utf-8")
        return value
    except UnicodeEncodeError:
        raise DecodeError("payload has an unpaired UTF-16 surrogate escape") from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"payload is not valid UTF-8: {exc}") from None
    except RecursionError:
        raise DecodeError("payload is nested too deeply to decode") from None
    except ValueError as exc:
        raise DecodeError(f"payload is not valid JSON: {exc}") from None


def encode_job(class_name: str, args: Sequence[Any]) -> str:
    """A queue item, ``{"class":...,"args":[...]}``, as ``Resque.enqueue_to`` writes it."""
    return dumps({"class": class_name, "args": list(args)})


def with_fields(encoded: str, fields: Mapping[str, Any]) -> str:
    """An encoded JSON object with ``fields`` appended after its own, byte for byte otherwise
    (fields Ruby does not know, such as ``unique_key`` or ``retry``, go last)."""
    if not fields:
        return encoded
    return encoded[:-1] + "," + dumps(dict(fields))[1:]


def encode_delayed_item(class_name: str, args: Sequence[Any], queue: str) -> str:
    """A resque-scheduler delayed item: key order ``class, args, queue`` (spec §15.1)."""
    return dumps({"class": class_name, "args": list(args), "queue": queue})


def worker_value(queue: str, run_at_text: str, raw_payload: str) -> str:
    """The ``worker:<id>`` value; the payload is spliced in raw so it stays byte-exact.

    ``raw_payload`` must already be valid JSON.
    """
    return (
        '{"queue":' + _ENCODER.encode(queue) + ',"run_at":"' + run_at_text + '","payload":'
        + raw_payload + "}"
    )


def writable_text(text: str) -> str:
    """``text`` with lone surrogates (an exception message or file name decoded with
    surrogateescape) written out as ``\\udcff``: Redis only takes text that encodes as UTF-8."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def failure_entry(
    *,
    failed_at_text: str,
    payload: Any,
    exception: str,
    error: str,
    backtrace: Sequence[str],
    worker: str,
    queue: str,
    raw_payload: Optional[str] = None,
) -> str:
    """A ``failed`` list entry with Resque's key order (spec §10.1).

    Pass ``raw_payload`` (valid JSON text) to embed the payload byte for byte instead of
    re-encoding ``payload``.
    """
    head = dumps({"failed_at": failed_at_text})[:-1]
    body = dumps(
        {
            "exception": writable_text(exception),
            "error": writable_text(error),
            "backtrace": [writable_text(str(line)) for line in backtrace],
            "worker": worker,
            "queue": queue,
        }
    )[1:]
    payload_text = raw_payload if raw_payload is not None else dumps(payload)
    return head + ',"payload":' + payload_text + "," + body


# ---------------------------------------------------------------------------------------
# Worker ids (spec §7.1).


@dataclass(frozen=True)
class WorkerId:
    """``host:pid:queues`` as Ruby's ``Worker#to_s``; ``pid`` may carry a slot (``4242-1``)."""

    host: str
    pid: str
    queues: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{','.join(self.queues)}"

    @property
    def pid_number(self) -> int:
        """The pid as Ruby's ``to_i`` reads it: leading digits, 0 if none."""
        match = re.match(r"\d+", self.pid)
        return int(match.group()) if match else 0

    @classmethod
    def parse(cls, text: str | bytes) -> WorkerId:
        """Split as Resque does; raise ``ValueError`` for an id Ruby could not use."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        parts = text.split(":", 2)
        if len(parts) != 3 or not parts[2]:
            raise ValueError(f"not a Resque worker id: {text!r}")
        return cls(parts[0], parts[1], tuple(parts[2].split(",")))

    @classmethod
    def build(cls, host: str, pid: int, queues: Iterable[str], slot: int = 0) -> WorkerId:
        """Slot 0 is a plain Resque id; other slots get goworker's ``pid-N`` form."""
        queue_list = tuple(queues)
        if not queue_list:
            raise ValueError("a worker needs at least one queue")
        for name in queue_list:
            if not name or ":" in name or "," in name:
                raise ValueError(f"queue name {name!r} cannot appear in a Resque worker id")
        return cls(host, str(pid) if slot == 0 else f"{pid}-{slot}", queue_list)
