"""Resque's own reading of a payload into a call: ``class`` names the job, ``args || []``.

The registry uses it unless a decoder is registered for the class (or for all classes).
"""

from __future__ import annotations

from typing import Any

from ..protocol.job import Job, JobCall
from .errors import PayloadError

__all__ = ["resque_decode"]

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    name = _JSON_TYPES.get(type(value))
    if name is None:
        name = "number" if isinstance(value, (int, float)) else type(value).__name__
    return name


def resque_decode(job: Job) -> JobCall:
    """Resque's own reading of a payload: ``class`` names the job, ``args || []`` (spec §3)."""
    payload = job.payload
    if payload is None:
        raise PayloadError(job.decode_error or "the payload could not be decoded")
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a JSON object, got {_json_type(payload)}")
    name = payload.get("class")
    if not isinstance(name, str) or not name:
        raise PayloadError(
            f'payload "class" must be a non-empty string, got {_json_type(name)}'
            if "class" in payload
            else 'payload has no "class"'
        )
    args = payload.get("args")
    if args is None:
        return JobCall(name)
    if not isinstance(args, list):
        raise PayloadError(f"args must be a JSON array, got {_json_type(args)}")
    # A copy, so a handler that mutates its arguments cannot change the failure entry.
    return JobCall(name, list(args))
