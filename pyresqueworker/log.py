"""Logging: JSON lines for machines (python-json-logger), short text lines for people."""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["MAX_FIELD_CHARS", "TextFormatter", "capped", "logger", "setup_logging"]

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


def setup_logging(level: str = "INFO", fmt: str = "text", stream: Any = None) -> None:
    """Send the package's log to ``stream`` (stderr) as ``json`` or ``text``."""
    handler = logging.StreamHandler(stream or sys.stderr)
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
