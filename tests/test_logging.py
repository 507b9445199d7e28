"""Log lines: one JSON object per line for machines, one readable line for people."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from pyresqueworker.log import logger, setup_logging

JOB_END = {"worker": "h:1:q", "queue": "q", "class": "Archive", "duration_ms": 3.2,
           "outcome": "success"}


@pytest.fixture
def restore_logger() -> Iterator[None]:
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def test_json_lines_carry_the_job_fields(restore_logger: None) -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", out)
    logger.info("job done", extra=JOB_END)
    logger.debug("not shown at info")
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "job done" and record["level"] == "INFO"
    assert {k: record[k] for k in JOB_END} == JOB_END
    assert "time" in record


def test_text_lines_are_one_line_even_for_hostile_values(restore_logger: None) -> None:
    out = io.StringIO()
    setup_logging("info", "text", out)
    logger.warning("job done", extra={**JOB_END, "class": "Evil\n2026 INFO worker stopped"})
    [line] = out.getvalue().splitlines()
    assert "WARNING job done" in line and "class=Evil\\n2026" in line


def test_unknown_format_is_refused(restore_logger: None) -> None:
    with pytest.raises(ValueError):
        setup_logging("INFO", "xml")
    assert logging.getLogger("pyresqueworker") is logger


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_per_job_fast_path_writes_what_the_logging_module_would(
    restore_logger: None, fmt: str
) -> None:
    from pyresqueworker.log import log_fields

    fields = {**JOB_END, "class": "Evil\n2026", "error": None}
    fast, slow = io.StringIO(), io.StringIO()
    setup_logging("INFO", fmt, fast)
    log_fields(logging.WARNING, "job done", dict(fields))
    log_fields(logging.DEBUG, "job done", dict(fields))  # below the level: nothing
    setup_logging("INFO", fmt, slow)
    logger.warning("job done", extra=dict(fields))
    if fmt == "text":  # the same bytes (both lines written within the same second, or a tick)
        assert fast.getvalue().split(" ", 2)[2] == slow.getvalue().split(" ", 2)[2]
        assert fast.getvalue().count("\n") == 1
    else:
        assert json.loads(fast.getvalue())["class"] == json.loads(slow.getvalue())["class"]
