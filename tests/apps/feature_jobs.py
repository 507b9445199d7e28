"""Handlers for retry, concurrency-cap and history tests (``--app worker_jobs --app feature_jobs``).

They report through the same ``test:*`` keys as :mod:`worker_jobs`.
"""

from __future__ import annotations

import time
from typing import Any

from worker_jobs import JobError, _line, _record, _redis

from pyresqueworker import job
from pyresqueworker.jobs.retry import Retry

_NOW = Retry(max=2, backoff="fixed", base=0)


@job("Flaky", retry=_NOW)
def flaky(tag: str, succeed_on: int) -> None:
    """Fails until its ``succeed_on``-th run (counted per tag), then succeeds."""
    runs = _redis().incr(f"test:runs:{tag}")
    _record("Flaky", tag, runs)
    if runs < succeed_on:
        raise JobError(f"attempt {runs} failed")


@job("AlwaysFails", retry=_NOW)
def always_fails(tag: str) -> None:
    _record("AlwaysFails", tag)
    raise JobError("still broken")


@job("RetryLater", retry=Retry(max=1, backoff="fixed", base=3600))
def retry_later(tag: str) -> None:
    _record("RetryLater", tag)
    raise JobError("try again in an hour")


@job("Fatal", retry=Retry(max=5, backoff="fixed", base=0, fatal=(ValueError,)))
def fatal(tag: str) -> None:
    _record("Fatal", tag)
    raise ValueError("bad input: retrying cannot help")


@job("NoPolicy")
def no_policy(tag: str) -> None:
    _record("NoPolicy", tag)
    raise JobError("fails; retried only when the enqueuer asked")


@job("Capped", max_concurrency=1)
def capped(tag: str, hold: float = 0.3) -> None:
    """Holds for ``hold`` seconds and counts how many Capped jobs overlap."""
    client = _redis()
    now_running = client.incr("test:capped:running")
    client.rpush("test:capped:peak", now_running)
    client.rpush("test:started", _line("Capped", [tag]))
    time.sleep(hold)
    client.decr("test:capped:running")
    _record("Capped", tag)


@job("WithId")
def with_id(*args: Any) -> None:
    _record("WithId", *args)


@job("BadMessage")
def bad_message() -> None:
    """Fails with a message holding a lone surrogate, as bytes decoded with surrogateescape."""
    raise ValueError(b"bad \xff byte".decode("utf-8", "surrogateescape"))
