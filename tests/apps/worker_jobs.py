"""Job handlers for the worker behaviour tests, loaded with ``pyresque-work --app worker_jobs``.

Every handler reports what happened to the Redis named by ``REDIS_URL`` under ``test:*`` keys
(outside the ``resque:`` namespace), so a test can see from outside the worker process that a
job ran, in which order, and on which worker:

* ``test:ran`` (list): one JSON line ``{"class","args","queue","worker","pid"}`` per finished job.
* ``test:started`` (list): the same line when a slow job starts.
* ``test:hooks`` (list): hook and perform calls of :class:`Hooked`, in order.

Slow jobs come in two kinds: :func:`sleep_job` sleeps a fixed time; :func:`hold_job` runs until
the test sets ``test:release:<tag>`` (or a safety limit passes), so a test decides when it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any, Optional

import redis

from pyresqueworker import Job, JobCall, PayloadError, current_job, job

__all__ = ["Hooked", "JobError"]

_client: Optional[redis.Redis] = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client


def _line(name: str, args: list[Any]) -> str:
    running, _call = current_job()
    return json.dumps({"class": name, "args": args, "queue": running.queue,
                       "worker": running.worker_id, "pid": os.getpid()})


def _record(name: str, *args: Any) -> None:
    _redis().rpush("test:ran", _line(name, list(args)))


class JobError(Exception):
    """Raised by :func:`boom`; its failure entry names it ``worker_jobs.JobError``."""


@job("MyClass")
def my_class(*args: Any) -> None:
    """The job of the issue text: ``{"class":"MyClass","args":["hi","there"]}``."""
    _record("MyClass", *args)


@job("Record")
def record(*args: Any) -> None:
    """A fast job that only records its arguments."""
    _record("Record", *args)


def _explode(message: str) -> None:
    raise JobError(message)


@job("Boom")
def boom(message: str = "boom") -> None:
    """Fails from a nested helper, so the backtrace has two frames of job code."""
    _explode(message)


@job("Exit")
def exit_job(code: int = 3) -> None:
    """Calls ``sys.exit`` as ported scripts sometimes do: must be a failure, not a dead slot."""
    sys.exit(code)


@job("Sleep")
def sleep_job(seconds: float, tag: str = "") -> None:
    """Sleeps ``seconds``; records its start and its end."""
    _redis().rpush("test:started", _line("Sleep", [seconds, tag]))
    time.sleep(seconds)
    _record("Sleep", seconds, tag)


@job("Hold")
def hold_job(tag: str, limit: float = 30.0) -> None:
    """Runs until ``test:release:<tag>`` exists (or ``limit`` seconds): the test ends it."""
    client = _redis()
    client.rpush("test:started", _line("Hold", [tag, limit]))
    deadline = time.monotonic() + limit
    while not client.exists(f"test:release:{tag}") and time.monotonic() < deadline:
        time.sleep(0.02)
    _record("Hold", tag, limit)


@job("Crash")
def crash_job(tag: str = "") -> None:
    """Kills its own worker process with SIGKILL mid-job, like an OOM kill or a segfault."""
    _redis().rpush("test:started", _line("Crash", [tag]))
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


@job("AsyncRecord")
async def async_record(*args: Any) -> None:
    """An ``async def`` job: it must be awaited on the worker's event loop."""
    await asyncio.sleep(0.01)
    _record("AsyncRecord", *args)


@job
class Hooked:
    """A class job with Resque hooks; ``perform("fail")`` raises to run ``on_failure``."""

    @staticmethod
    def _note(text: str) -> None:
        _redis().rpush("test:hooks", text)

    @classmethod
    def before_perform(cls, *args: Any) -> None:
        cls._note(f"before_perform {args}")

    @classmethod
    def before_perform_b(cls, *args: Any) -> None:
        cls._note(f"before_perform_b {args}")

    @classmethod
    def perform(cls, *args: Any) -> None:
        cls._note(f"perform {args}")
        if args and args[0] == "fail":
            raise JobError("hooked failure")
        _record("Hooked", *args)

    @classmethod
    def after_perform(cls, *args: Any) -> None:
        cls._note(f"after_perform {args}")

    @classmethod
    def on_failure(cls, exc: BaseException, *args: Any) -> None:
        cls._note(f"on_failure {type(exc).__name__} {args}")


def _broken_decoder(_job: Job) -> JobCall:
    raise KeyError("no such field")


@job("BadDecoder", decoder=_broken_decoder)
def bad_decoder(*args: Any) -> None:
    """Never runs: its decoder always raises."""
    _record("BadDecoder", *args)


def _strict_decoder(running: Job) -> JobCall:
    payload = running.payload or {}
    if "token" not in payload:
        raise PayloadError("payload has no token")
    return JobCall("Tokened", [payload["token"]])


@job("Tokened", decoder=_strict_decoder)
def tokened(token: str) -> None:
    """Decoded by :func:`_strict_decoder`, which rejects payloads without ``token``."""
    _record("Tokened", token)
