"""ActiveJob's argument markers and Ruby values without a Python twin, and Ruby's times.

The vocabulary :mod:`pyresqueworker.jobs.activejob` reads and writes: the ``_aj_*`` keys, the
serializer names, :class:`RubySymbol`, :class:`RubyRange`, :class:`RubyModule`,
:class:`GlobalID`, and ``iso8601(9)`` times. Re-exported there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

GLOBALID_KEY = "_aj_globalid"
SYMBOL_KEYS_KEY = "_aj_symbol_keys"
RUBY2_KEYWORDS_KEY = "_aj_ruby2_keywords"
INDIFFERENT_KEY = "_aj_hash_with_indifferent_access"
SERIALIZER_KEY = "_aj_serialized"
_RESERVED = frozenset(
    (GLOBALID_KEY, SYMBOL_KEYS_KEY, RUBY2_KEYWORDS_KEY, INDIFFERENT_KEY, SERIALIZER_KEY)
)
_MARKERS = (SYMBOL_KEYS_KEY, RUBY2_KEYWORDS_KEY, INDIFFERENT_KEY)

SYMBOL = "ActiveJob::Serializers::SymbolSerializer"
TIME = "ActiveJob::Serializers::TimeSerializer"
DATETIME = "ActiveJob::Serializers::DateTimeSerializer"
TIME_WITH_ZONE = "ActiveJob::Serializers::TimeWithZoneSerializer"
DATE = "ActiveJob::Serializers::DateSerializer"
DURATION = "ActiveJob::Serializers::DurationSerializer"
BIG_DECIMAL = "ActiveJob::Serializers::BigDecimalSerializer"  # Rails 7.1+
RANGE = "ActiveJob::Serializers::RangeSerializer"  # Rails 7.1+
MODULE = "ActiveJob::Serializers::ModuleSerializer"  # Rails 7.0+

# job_data keys that describe the job rather than its arguments; copied to JobCall.metadata.
METADATA_KEYS = (
    "job_id", "executions", "exception_executions", "locale", "timezone", "enqueued_at",
    "scheduled_at", "queue_name", "priority", "provider_job_id",
)
_UTC = timezone.utc


class RubySymbol(str):
    """A ``str`` that Ruby sees as a Symbol: ``:x`` as a value, or a symbol hash key.

    Decoded Ruby symbols are RubySymbols, so they compare equal to plain strings and survive
    a round trip unchanged.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"RubySymbol({str(self)!r})"


@dataclass(frozen=True)
class RubyRange:
    """A Ruby ``Range`` (``1..5`` is ``RubyRange(1, 5)``, ``1...5`` sets ``exclude_end``)."""

    begin: Any
    end: Any
    exclude_end: bool = False


@dataclass(frozen=True)
class RubyModule:
    """A Ruby class or module passed as an argument, by constant name (``"Admin::User"``)."""

    name: str


@dataclass(frozen=True)
class GlobalID:
    """A GlobalID reference to a record, ``gid://<app>/<Model>/<id>``, without resolving it."""

    uri: str

    def __post_init__(self) -> None:
        self._parts()  # fail early on a malformed URI

    def _parts(self) -> tuple[str, str, str]:
        if not isinstance(self.uri, str) or not self.uri.startswith("gid://"):
            raise ValueError(f"not a GlobalID URI: {self.uri!r}")
        parts = self.uri[len("gid://"):].split("?", 1)[0].split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"not a GlobalID URI: {self.uri!r}")
        return parts[0], unquote(parts[1]), unquote(parts[2])

    @property
    def app(self) -> str:
        return self._parts()[0]

    @property
    def model(self) -> str:
        return self._parts()[1]

    @property
    def id(self) -> str:
        return self._parts()[2]

    @classmethod
    def create(cls, app: str, model: str, model_id: Any) -> GlobalID:
        """``GlobalID.create("shop", "User", 42)`` is ``gid://shop/User/42``."""
        return cls(f"gid://{app}/{model}/{quote(str(model_id), safe='')}")


# ---------------------------------------------------------------------------------------
# Times: Ruby's ``iso8601(9)`` and ``Time.iso8601`` (3.9's fromisoformat takes neither).

_ISO_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:[.,](\d+))?(Z|[+-]\d\d(?::?\d\d)?)\Z"
)


def _parse_time(text: Any) -> datetime:
    match = _ISO_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not an ISO 8601 time with a UTC offset: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))  # Ruby keeps ns; Python stops at µs
    if zone == "Z":
        tz = _UTC
    else:
        digits = zone[1:].replace(":", "").ljust(4, "0")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(-offset if zone[0] == "-" else offset)
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
    )


def _iso9(moment: datetime) -> str:
    """Ruby's ``Time#iso8601(9)``: nanoseconds, ``Z`` for UTC, else ``+HH:MM``."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"{moment!r} is naive; ActiveJob needs an aware datetime")
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}000"
    )
    if not offset and moment.tzname() == "UTC":
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _in_zone(moment: datetime, name: Any) -> datetime:
    if isinstance(name, str):
        try:
            return moment.astimezone(ZoneInfo(name))
        except (KeyError, ValueError, OSError):  # unknown zone: keep the written offset
            pass
    return moment
