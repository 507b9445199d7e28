"""Logging: JSON lines for machines (python-json-logger), short text lines for people."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Optional

__all__ = [
    "MAX_FIELD_CHARS", "TextFormatter", "capped", "log_fields", "logger", "setup_logging",
]

logger = logging.getLogger("pyresqueworker")

# Attributes every LogRecord has; anything else came in through ``extra=`` and is shown.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


#: Longest field value a log line shows; a job's 10 MB exception message stays whole in its
#: failure entry, not in the log.
MAX_FIELD_CHARS = 2000


def capped(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``text``, cut to ``limit`` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _printable(value: object) -> str:
    """A field value on one line: a job's class name must not be able to forge log lines."""
    text = capped(str(value))
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class _CappedJsonFields(logging.Filter):
    """Caps string fields of JSON records (the text formatter caps while formatting)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in record.__dict__.items():
            if key not in _STANDARD and isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
                record.__dict__[key] = capped(value)
        if isinstance(record.msg, str) and len(record.msg) > MAX_FIELD_CHARS:
            record.msg = capped(record.msg)
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-23 10:00:00 INFO job done queue=high class=Archive duration_ms=3.1``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(
            f"{k}={_printable(v)}" for k, v in record.__dict__.items()
            if k not in _STANDARD and v is not None
        )
        return f"{text} {fields}" if fields else text


class _TextLines:
    """Writes text lines straight to the package's own handler, bypassing the per-record
    machinery of :mod:`logging` (caller lookup, the record, the formatter): that machinery
    cost most of a no-op job's time when every job logs a line. Same bytes as
    :class:`TextFormatter`."""

    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        self.handler = handler
        self._second = -1
        self._stamp = ""

    def write(self, level: int, message: str, fields: dict[str, Any]) -> None:
        now = int(time.time())
        if now != self._second:  # the time text changes once a second
            self._second, self._stamp = now, time.strftime("%Y-%m-%d %H:%M:%S",
                                                           time.localtime(now))
        text = " ".join(f"{k}={_printable(v)}" for k, v in fields.items() if v is not None)
        line = f"{self._stamp} {logging.getLevelName(level)} {message} {text}\n"
        handler = self.handler
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.flush()
        finally:
            handler.release()


_direct: Optional[_TextLines] = None


def log_fields(level: int, message: str, fields: dict[str, Any]) -> None:
    """``logger.log(level, message, extra=fields)`` for a hot path (the per-job line): when
    the package's own text handler is the only place the line goes, it is written directly."""
    direct = _direct
    if (direct is not None and logger.handlers == [direct.handler] and not logger.filters
            and logger.isEnabledFor(level)):
        direct.write(level, message, fields)
    else:
        logger.log(level, message, extra=fields)


def setup_logging(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    """Send the package's log to ``stream`` (stderr) as ``json`` or ``text``."""
    global _direct
    handler = logging.StreamHandler(stream or sys.stderr)
    _direct = _TextLines(handler) if fmt == "text" else None
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
        handler.addFilter(_CappedJsonFields())
    elif fmt == "text":
        handler.setFormatter(TextFormatter())
    else:
        raise ValueError("log format must be 'json' or 'text'")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
