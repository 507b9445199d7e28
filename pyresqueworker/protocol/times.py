"""Resque's time formats (spec §1.3), and :data:`When`, a moment given by a caller.

``now`` is epoch seconds, for tests; the local zone is the process's. Re-exported by
:mod:`pyresqueworker.protocol.wire`, where the rest of the package reads them.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union

__all__ = [
    "When",
    "failed_at",
    "heartbeat_value",
    "iso_utc",
    "parse_time",
    "resque_retry_failed_at",
    "run_at",
    "started_at",
]

#: A moment: an aware ``datetime`` or epoch seconds.
When = Union[datetime, int, float]


def _local(now: Optional[float]) -> datetime:
    return datetime.fromtimestamp(time.time() if now is None else now).astimezone()


def failed_at(now: Optional[float] = None) -> str:
    """``failed_at`` / ``retried_at``: ``2024/01/15 09:50:00 UTC`` in the local zone."""
    return _local(now).strftime("%Y/%m/%d %H:%M:%S %Z")


def iso_utc(epoch: float) -> str:
    """Epoch seconds as UTC ISO 8601 with ``Z`` and no fraction: ``2024-01-15T09:50:00Z``."""
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def resque_retry_failed_at(now: Optional[float] = None) -> str:
    """resque-retry's ``failure-…`` ``failed_at``: ``2024/01/15 09:50:00``, local, no zone."""
    return _local(now).strftime("%Y/%m/%d %H:%M:%S")


_run_at_cache: tuple[int, str] = (-1, "")


def run_at(now: Optional[float] = None) -> str:
    """``run_at`` in a worker key: UTC ISO 8601 with ``Z``, no fraction.

    Called once per job, so the text is cached for the current second.
    """
    global _run_at_cache
    second = int(time.time() if now is None else now)
    cached = _run_at_cache
    if cached[0] == second:
        return cached[1]
    text = iso_utc(second)
    _run_at_cache = (second, text)
    return text


def started_at(now: Optional[float] = None) -> str:
    """``worker:<id>:started``: Ruby's ``Time#to_s``, ``2024-01-15 09:50:00 +0000``."""
    return _local(now).strftime("%Y-%m-%d %H:%M:%S %z")


def heartbeat_value(server_seconds: int) -> str:
    """A heartbeat from Redis ``TIME`` seconds: ``2024-01-15T09:50:00+00:00`` (never ``Z``)."""
    return _local(int(server_seconds)).isoformat(timespec="seconds")


_ISO_RE = re.compile(
    r"^\s*(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?"
    r"\s*(Z|UTC|GMT|[+-]\d\d:?\d\d)?"
)
_SLASH_RE = re.compile(r"^\s*(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)\s*(\S+)?")
# JavaScript's Date#toString, which node-resque writes for run_at and failed_at:
# "Mon Dec 07 2026 13:37:28 GMT+0100 (Central European Standard Time)".
_JS_DATE_RE = re.compile(
    r"^\s*[A-Z][a-z]{2} ([A-Z][a-z]{2}) (\d\d) (-?\d{4,6}) (\d\d):(\d\d):(\d\d) GMT([+-]\d{4})")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _offset(text: Optional[str]) -> Optional[timezone]:
    if text is None:
        return None
    if text in ("Z", "UTC", "GMT"):
        return timezone.utc
    if text[0] in "+-" and text[1:].replace(":", "").isdigit():
        digits = text[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
        return timezone(-delta if text[0] == "-" else delta)
    return None


def parse_time(text: Any) -> Optional[float]:
    """Epoch seconds from any time format a Resque-family worker writes, or ``None``.

    Accepts Ruby's heartbeat and ``Time#to_s``, goworker's RFC 3339 (with nanoseconds),
    resque-web's slash format, pyres's epoch numbers and node-resque's ``Date#toString``.
    Never raises: a prune must not crash on another client's odd value.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.strip():
        return None
    stripped = text.strip()
    try:
        if re.fullmatch(r"\d+(\.\d+)?", stripped):
            return float(stripped)
        match = _ISO_RE.match(stripped)
        slash = None if match else _SLASH_RE.match(stripped)
        js = None if match or slash else _JS_DATE_RE.match(stripped)
        if match:
            y, mo, d, h, mi, s, frac, zone = match.groups()
            fraction = float("0." + frac) if frac else 0.0
        elif slash:
            y, mo, d, h, mi, s, zone = slash.groups()
            fraction = 0.0
        elif js and js.group(1) in _MONTHS:
            month, d, y, h, mi, s, zone = js.groups()
            mo = str(_MONTHS.index(month) + 1)
            fraction = 0.0
        else:
            return None
        tz = _offset(zone)
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0))
        moment = moment.replace(tzinfo=tz) if tz else moment.astimezone()
        return moment.timestamp() + fraction
    except (ValueError, OverflowError):
        return None
