"""What a slot holds, as the claim writes it: the ``worker:<id>`` value and the raw list.

Shared by the claim, which writes them, and recovery, which reads them back after a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import redis

from ..protocol._resp import command
from ..protocol.wire import DecodeError, dumps, loads

__all__ = ["BEING_CHECKED", "BEING_TAKEN", "Claimed", "HeldLarge", "checked_payload",
           "invalid_note", "parse_worker_value", "read_raw"]

# The end of a worker key written while a large item is being taken (see Claimer.take_held).
BEING_CHECKED = b'"payload being checked"}'  # (the payload, after the worker key's head)
BEING_TAKEN = b',"payload":' + BEING_CHECKED


def invalid_note(item: bytes) -> bytes:
    """The worker key's payload (and closing brace) for an item that is not a JSON object."""
    return f'"invalid payload ({len(item)} bytes)"}}'.encode()


def checked_payload(item: bytes) -> Optional[dict[str, Any]]:
    """The payload decoded, if it passes what the claim script checks before it shows a
    payload in a worker key: a UTF-8 JSON object Ruby can decode (here with Python's C
    decoders, for large payloads); else None."""
    if item.lstrip()[:1] != b"{":
        return None
    try:
        payload = loads(item.decode("utf-8"))
    except (UnicodeDecodeError, DecodeError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


@dataclass(frozen=True)
class Claimed:
    """A job the claim script moved into this slot's worker key.

    ``valid`` means the worker key shows the payload; otherwise the payload is in the slot's
    raw list (not a UTF-8 JSON object, or over 1 MB) and Python decides. ``payload`` is the
    decoded payload when the worker already decoded it (a large item it checked).
    """

    queue: str
    raw: bytes
    valid: bool
    payload: Optional[dict[str, Any]] = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class HeldLarge:
    """Claim reply: the head of ``queue`` is large and was left there for the worker to take
    and check (:meth:`Claimer.take_held`)."""

    queue: str


def parse_worker_value(value: bytes, raw: Optional[bytes] = None) -> Claimed | None:
    """The job held in a ``worker:<id>`` value written by the claim script (or by Ruby).

    A payload that was not a UTF-8 JSON object is kept in the slot's raw list: pass its
    bytes as ``raw``.
    """
    try:
        held = json.loads(value)
        queue = str(held["queue"])
        payload = held["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(payload, str):
        return Claimed(queue, raw if raw is not None else payload.encode(), False)
    marker = value.find(b',"payload":')
    if marker < 0:
        return Claimed(queue, dumps(payload).encode(), True)
    return Claimed(queue, value[marker + len(b',"payload":') : -1], True)


def read_raw(conn: redis.Redis, key: str) -> Optional[bytes]:
    """A slot's raw payload: the one item of its raw list (a string before version 0.10)."""
    try:
        value = command(conn, "LINDEX", key, 0)
    except redis.exceptions.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        value = command(conn, "GET", key)
    return None if value is None else bytes(value)
