"""How the dashboard shows jobs, times and sizes: plain text only (templates escape it)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Optional, Union

from ..jobs.activejob import (
    JOB_WRAPPER,
    deserialize_arguments,
    job_class,
    recorded_enqueued_at,
    wrapped_job_data,
)
from ..protocol import wire

__all__ = [
    "NOT_A_JOB",
    "NO_CLASS",
    "JobView",
    "active_job_arguments",
    "age_text",
    "digest",
    "job_view",
    "json_text",
    "local_time",
    "recorded_job_view",
    "truncate",
]

#: What a job without a ``class`` is shown as (any client may have written it).
NO_CLASS = "(no class)"
#: What a payload that is not a JSON object is shown as.
NOT_A_JOB = "(not a job object)"
#: Characters of a job's arguments shown in a list row; the full text is on detail pages.
SHORT = 200
#: Characters shown anywhere: a 10 MB payload must not become a 10 MB page.
LONG = 20_000


def truncate(text: str, limit: int = SHORT) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + " …"


def json_text(value: Any, limit: int = LONG) -> str:
    """Compact JSON of a decoded value (any value: falls back to ``repr``), truncated."""
    try:
        # default=str: decoded ActiveJob arguments hold times, GlobalIDs, ranges...
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return truncate(text, limit)


def raw_text(raw: Union[bytes, str, None], limit: int = LONG) -> str:
    """Stored bytes as text for display (invalid UTF-8 replaced), truncated."""
    if raw is None:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return truncate(text, limit)


def digest(raw: Union[bytes, str]) -> str:
    """A short fingerprint of stored bytes, so an action can tell the entry it was shown."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return hashlib.sha256(data).hexdigest()[:20]


@dataclass(frozen=True)
class JobView:
    """A payload as the pages show it.

    For ActiveJob jobs ``class_name`` is the job class (``HelloJob``) and ``args`` its decoded
    ``arguments``; ``wrapper`` then names the Resque class that carries it.
    """

    class_name: str
    args: str
    args_short: str
    job_id: Optional[str]
    wrapper: Optional[str]
    enqueued_at: Optional[float]


def job_view(payload: Any) -> JobView:
    """Describe a decoded payload; anything that is not a job object is shown as text.

    An ActiveJob payload is shown as resque-web shows it: under the job's own class, with its
    arguments decoded (symbols, times, keyword arguments) rather than the wrapper's JSON.
    """
    if not isinstance(payload, dict):
        text = json_text(payload)
        return JobView(NOT_A_JOB, text, truncate(text), None, None, None)
    class_name = payload.get("class")
    if class_name is None:
        name = NO_CLASS
    else:
        name = class_name if isinstance(class_name, str) else json_text(class_name, SHORT)
    job_id = payload.get("id") if isinstance(payload.get("id"), str) else None
    enqueued = wire.parse_time(recorded_enqueued_at(payload))
    data = wrapped_job_data(payload)
    inner = job_class(payload)
    if data is not None and inner is not None and inner != class_name:
        text = active_job_arguments(data.get("arguments"))
        inner_id = data.get("job_id")
        return JobView(inner, text, truncate(text),
                       inner_id if isinstance(inner_id, str) else job_id, name, enqueued)
    text = json_text(payload.get("args"))
    return JobView(name, text, truncate(text), job_id, None, enqueued)


def recorded_job_view(class_name: str, args: Any, job_id: Optional[str]) -> JobView:
    """A history record's job as the other pages show it.

    A record keeps the class the job ran as (ActiveJob's job class) and the payload's
    ``args``, which for an ActiveJob job are the wrapper's ``[job_data]``: the wrapper is put
    back around them so the job is shown as such, not as the wrapper's JSON.
    """
    wrapped = {"class": JOB_WRAPPER, "args": args}
    payload = wrapped if job_class(wrapped) == class_name else {"class": class_name,
                                                                 "args": args}
    return replace(job_view(payload), job_id=job_id)


def active_job_arguments(arguments: Any) -> str:
    """ActiveJob ``arguments`` decoded, as the call's argument list (``"world", 42, greeting:
    "hi"``); the stored JSON when they do not decode."""
    if not isinstance(arguments, list):
        return json_text(arguments)
    try:
        args, kwargs = deserialize_arguments(arguments)
    except (ValueError, TypeError, ArithmeticError, RecursionError):  # whatever Rails wrote
        return json_text(arguments)
    parts = [json_text(value) for value in args]
    parts += [f"{name}: {json_text(value)}" for name, value in kwargs.items()]
    return truncate(", ".join(parts), LONG)


def age_text(seconds: Optional[float]) -> str:
    """A duration as ``42 s``, ``5 min``, ``3 h 10 min``, ``2 d 4 h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "0 s"
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def local_time(epoch: Optional[float]) -> str:
    """Epoch seconds as ``2026-11-23 07:35:33 +0000`` in the dashboard's zone; ``-`` if none."""
    if epoch is None:
        return "-"
    try:
        return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    except (OverflowError, OSError, ValueError):
        return "-"


def since(text: Any, now: Optional[float] = None) -> Optional[float]:
    """Seconds from a stored time text (any Resque format) to ``now``; ``None`` if unparsable."""
    moment = wire.parse_time(text)
    if moment is None:
        return None
    return (time.time() if now is None else now) - moment
