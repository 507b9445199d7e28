"""Rails ActiveJob interop: read and write ``ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper``.

Rails enqueues ``{"class": JOB_WRAPPER, "args": [job_data]}`` (spec §16); the job's own class is
``job_data["job_class"]`` and its arguments use ActiveJob's serialization
(rails/rails activejob/lib/active_job/arguments.rb and serializers/*.rb). :func:`decode_active_job`
is registered on every :class:`~pyresqueworker.Registry` for the wrapper class, so a
Python handler registered as ``HelloJob`` receives ``HelloJob.perform_later(...)`` calls.
:func:`serialize_arguments` and :func:`job_data` go the other way.

Ruby values without a Python twin come back as small markers: :class:`RubySymbol` (a ``str``),
:class:`RubyRange`, :class:`RubyModule` and :class:`GlobalID`; pass them back to send the same
Ruby value.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Optional, Union
from zoneinfo import ZoneInfo

from ..protocol.job import Job, JobCall
from ._activejob_values import (
    _MARKERS,
    _RESERVED,
    _UTC,
    BIG_DECIMAL,
    DATE,
    DATETIME,
    DURATION,
    GLOBALID_KEY,
    INDIFFERENT_KEY,
    METADATA_KEYS,
    MODULE,
    RANGE,
    RUBY2_KEYWORDS_KEY,
    SERIALIZER_KEY,
    SYMBOL,
    SYMBOL_KEYS_KEY,
    TIME,
    TIME_WITH_ZONE,
    GlobalID,
    RubyModule,
    RubyRange,
    RubySymbol,
    _in_zone,
    _iso9,
    _parse_time,
)
from .errors import PayloadError

__all__ = [
    "JOB_WRAPPER",
    "GlobalID",
    "RubyModule",
    "RubyRange",
    "RubySymbol",
    "decode_active_job",
    "deserialize_arguments",
    "job_class",
    "job_data",
    "recorded_enqueued_at",
    "serialize_arguments",
    "wrapped_job_data",
    "wrapper_payload",
]

JOB_WRAPPER = "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper"


def wrapped_job_data(payload: Any) -> Optional[dict[str, Any]]:
    """ActiveJob's ``job_data`` inside a JobWrapper payload; None for any other payload."""
    if not isinstance(payload, dict) or payload.get("class") != JOB_WRAPPER:
        return None
    args = payload.get("args")
    data = args[0] if isinstance(args, list) and args else None
    return data if isinstance(data, dict) else None


def recorded_enqueued_at(payload: Any) -> Any:
    """The enqueue time a payload records, as stored: a top-level ``enqueued_at``, else
    ActiveJob's; None for payloads that record none (Resque's own ``{"class","args"}``)."""
    if not isinstance(payload, dict):
        return None
    value = payload.get("enqueued_at")
    if value is None:
        data = wrapped_job_data(payload)
        value = data.get("enqueued_at") if data is not None else None
    return value


def job_class(payload: Any) -> Optional[str]:
    """The class a payload runs, as resque-web names it: ActiveJob's ``job_class`` for Rails'
    JobWrapper, otherwise the payload's ``class``; ``None`` if there is none."""
    data = wrapped_job_data(payload)
    inner = data.get("job_class") if data is not None else None
    if isinstance(inner, str) and inner:
        return inner
    name = payload.get("class") if isinstance(payload, dict) else None
    return name if isinstance(name, str) else None

# ---------------------------------------------------------------------------------------
# Deserialization (arguments.rb ``deserialize_argument``).


def _deserialize(value: Any) -> Any:
    if isinstance(value, list):
        return [_deserialize(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and GLOBALID_KEY in value:
        return GlobalID(value[GLOBALID_KEY])
    if SERIALIZER_KEY in value:
        return _deserialize_object(value)
    return _deserialize_hash(value)


def _deserialize_hash(value: dict[str, Any]) -> dict[Any, Any]:
    symbols = value.get(SYMBOL_KEYS_KEY)
    if symbols is None:
        symbols = value.get(RUBY2_KEYWORDS_KEY)
    wanted: frozenset[Any] = frozenset()
    if isinstance(symbols, list) and INDIFFERENT_KEY not in value:
        wanted = frozenset(name for name in symbols if isinstance(name, str))
    return {
        (RubySymbol(key) if key in wanted else key): _deserialize(item)
        for key, item in value.items()
        if key not in _MARKERS
    }


def _str_value(value: dict[str, Any]) -> str:
    raw = value.get("value")
    if not isinstance(raw, str):
        raise ValueError(f"{value[SERIALIZER_KEY]} value must be a string, got {raw!r}")
    return raw


def _duration(value: dict[str, Any]) -> timedelta:
    # ``value`` is the total in seconds; ``parts`` only matter to Ruby's Duration#inspect.
    raw = value.get("value")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError(f"{DURATION} value must be a number of seconds, got {raw!r}")
    return timedelta(seconds=raw)


_OBJECT_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    SYMBOL: lambda v: RubySymbol(_str_value(v)),
    TIME: lambda v: _parse_time(v.get("value")),
    DATETIME: lambda v: _parse_time(v.get("value")),
    TIME_WITH_ZONE: lambda v: _in_zone(_parse_time(v.get("value")), v.get("time_zone")),
    DATE: lambda v: date.fromisoformat(_str_value(v)),
    DURATION: _duration,
    BIG_DECIMAL: lambda v: Decimal(_str_value(v)),
    RANGE: lambda v: RubyRange(
        _deserialize(v.get("begin")), _deserialize(v.get("end")), bool(v.get("exclude_end"))
    ),
    MODULE: lambda v: RubyModule(_str_value(v)),
}


def _deserialize_object(value: dict[str, Any]) -> Any:
    decoder = _OBJECT_DECODERS.get(value[SERIALIZER_KEY])
    # An application's own serializer: hand its hash over untouched.
    return value if decoder is None else decoder(value)


def deserialize_arguments(arguments: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
    """ActiveJob ``arguments`` to ``(args, kwargs)``.

    A last hash marked ``_aj_ruby2_keywords`` is Ruby's keyword arguments, so it becomes
    ``kwargs``; anywhere else it is an ordinary dict.
    """
    items = list(arguments)
    kwargs: dict[str, Any] = {}
    last = items[-1] if items else None
    if (
        isinstance(last, dict)
        and RUBY2_KEYWORDS_KEY in last
        and SERIALIZER_KEY not in last
        and not (len(last) == 1 and GLOBALID_KEY in last)
    ):
        items.pop()
        kwargs = {str(key): value for key, value in _deserialize_hash(last).items()}
    return [_deserialize(item) for item in items], kwargs


def decode_active_job(job: Job) -> JobCall:
    """Decoder for JobWrapper payloads: dispatch on ``job_class`` with decoded arguments."""
    args = job.payload.get("args") if job.payload is not None else None
    if not isinstance(args, list) or not args:
        raise PayloadError(f"{JOB_WRAPPER} needs args [job_data], got {args!r}")
    data = args[0]
    if not isinstance(data, dict):
        raise PayloadError(f"ActiveJob job_data must be a JSON object, got {data!r}")
    job_class = data.get("job_class")
    if not isinstance(job_class, str) or not job_class:
        raise PayloadError(f"ActiveJob job_data has no job_class: {job_class!r}")
    arguments = data.get("arguments")
    if arguments is None:
        arguments = []
    if not isinstance(arguments, list):
        raise PayloadError(f"ActiveJob arguments of {job_class} must be a JSON array")
    try:
        call_args, call_kwargs = deserialize_arguments(arguments)
    except (ValueError, TypeError, ArithmeticError) as exc:
        # Decimal raises ArithmeticError (InvalidOperation) for a bad BigDecimal value.
        error = PayloadError(
            f"Error while trying to deserialize arguments of {job_class}: {exc}"
        )
        raise error from exc
    metadata = {key: data.get(key) for key in METADATA_KEYS}
    metadata["job_data"] = data
    return JobCall(job_class, call_args, call_kwargs, metadata)


# ---------------------------------------------------------------------------------------
# Serialization (arguments.rb ``serialize_argument``), for producing jobs Rails can run.


def _object(kind: str, **fields: Any) -> dict[str, Any]:
    return {SERIALIZER_KEY: kind, **fields}


def _serialize(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} cannot be written as JSON")
        return value
    if isinstance(value, RubySymbol):
        return _object(SYMBOL, value=str(value))
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_serialize(item) for item in value]
    if isinstance(value, Mapping):
        return _serialize_hash(value, keywords=False)
    if isinstance(value, datetime):
        if isinstance(value.tzinfo, ZoneInfo):
            return _object(TIME_WITH_ZONE, value=_iso9(value), time_zone=value.tzinfo.key)
        return _object(TIME, value=_iso9(value))
    if isinstance(value, date):
        return _object(DATE, value=value.isoformat())
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        amount: Union[int, float] = int(seconds) if seconds == int(seconds) else seconds
        return _object(DURATION, value=amount, parts=[[_serialize(RubySymbol("seconds")), amount]])
    if isinstance(value, Decimal):
        if value.is_snan():
            raise ValueError("a signalling NaN Decimal cannot be sent to Ruby")
        return _object(BIG_DECIMAL, value=str(value))
    if isinstance(value, GlobalID):
        return {GLOBALID_KEY: value.uri}
    if isinstance(value, RubyRange):
        return _object(
            RANGE,
            begin=_serialize(value.begin),
            end=_serialize(value.end),
            exclude_end=bool(value.exclude_end),
        )
    if isinstance(value, RubyModule):
        return _object(MODULE, value=value.name)
    raise TypeError(f"Unsupported argument type: {type(value).__qualname__}")


def _serialize_hash(value: Mapping[Any, Any], *, keywords: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    symbols: list[str] = []
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(
                f"Only string hash keys may be serialized as job arguments, but {key!r} "
                f"is a {type(key).__qualname__}"
            )
        if key in _RESERVED:
            raise ValueError(f"Can't serialize a Hash with reserved key {key!r}")
        if keywords or isinstance(key, RubySymbol):
            symbols.append(str(key))
        result[str(key)] = _serialize(item)
    result[RUBY2_KEYWORDS_KEY if keywords else SYMBOL_KEYS_KEY] = symbols
    return result


def serialize_arguments(
    args: Sequence[Any], kwargs: Optional[Mapping[str, Any]] = None
) -> list[Any]:
    """Python arguments to ActiveJob's ``arguments`` JSON, as ``perform_later(*args, **kwargs)``.

    Dicts gain ``_aj_symbol_keys`` (listing their :class:`RubySymbol` keys); ``kwargs`` become
    a last hash with ``_aj_ruby2_keywords``. Aware datetimes, dates, timedeltas, Decimals and
    the Ruby markers become ``_aj_serialized`` objects. Raises ``ValueError`` for reserved or
    non-string keys and naive datetimes, ``TypeError`` for types ActiveJob cannot carry.
    Note that ``BigDecimalSerializer`` and ``RangeSerializer`` need Rails 7.1 on the Ruby side.
    """
    result = [_serialize(item) for item in args]
    if kwargs:
        result.append(_serialize_hash(kwargs, keywords=True))
    return result


def _time_field(value: Union[datetime, float, int, str, None]) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return _iso9(value.astimezone(_UTC) if value.utcoffset() is not None else value)
    return _iso9(datetime.fromtimestamp(value, _UTC))


def job_data(
    job_class: str,
    arguments: Sequence[Any],
    *,
    queue_name: str = "default",
    job_id: Optional[str] = None,
    priority: Optional[int] = None,
    locale: str = "en",
    timezone: Optional[str] = "UTC",
    enqueued_at: Union[datetime, float, str, None] = None,
    scheduled_at: Union[datetime, float, str, None] = None,
    executions: int = 0,
    exception_executions: Optional[Mapping[str, int]] = None,
) -> dict[str, Any]:
    """ActiveJob's ``job.serialize`` for Rails 7.1+, in its key order (spec §16).

    ``arguments`` is the output of :func:`serialize_arguments`. Times may be aware datetimes
    or epoch seconds and are written as UTC ``iso8601(9)``; ``enqueued_at`` defaults to now
    and ``job_id`` to a new UUID.
    """
    if not job_class:
        raise ValueError("job_class must be a non-empty string")
    return {
        "job_class": job_class,
        "job_id": job_id if job_id is not None else str(uuid.uuid4()),
        "provider_job_id": None,
        "queue_name": queue_name,
        "priority": priority,
        "arguments": list(arguments),
        "executions": executions,
        "exception_executions": dict(exception_executions or {}),
        "locale": locale,
        "timezone": timezone,
        "enqueued_at": _time_field(enqueued_at if enqueued_at is not None else datetime.now(_UTC)),
        "scheduled_at": _time_field(scheduled_at),
    }


def wrapper_payload(data: Mapping[str, Any]) -> dict[str, Any]:
    """The queue item Rails' Resque adapter writes for ``data``: ``{"class", "args"}``."""
    return {"class": JOB_WRAPPER, "args": [dict(data)]}
