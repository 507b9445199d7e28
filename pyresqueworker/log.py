"""Logging: JSON lines for machines (python-json-logger), short text lines for people."""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["TextFormatter", "logger", "setup_logging"]

logger = logging.getLogger("pyresqueworker")

# Attributes every LogRecord has; anything else came in through ``extra=`` and is shown.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _printable(value: object) -> str:
    """A field value on one line: a job's class name must not be able to forge log lines."""
    text = str(value)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


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
    elif fmt == "text":
        handler.setFormatter(TextFormatter())
    else:
        raise ValueError("log format must be 'json' or 'text'")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
