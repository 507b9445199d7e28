"""The soak's jobs, registered in every worker with ``pyresque-work --app soakkit.jobs``.

Each handler writes a start and an end event to the ledger (``SOAK_LEDGER_URL``; see
:mod:`soakkit.ledger`) around its work, which is a sleep: jobs that wait rather than compute
keep every slot busy without taking the 2 cores the soak shares with the servers. The first
argument of every job is its id, unique across the run.

* ``SoakWork`` (sync) and ``SoakAsync`` (``async def``) succeed.
* ``SoakBig`` carries a 1 MB argument, checks it arrived intact, and succeeds; at most two
  run at once per Redis (``max_concurrency``), which exercises the claim's caps.
* ``SoakBoom`` fails once, for good (no retry policy).
* ``SoakDoomed`` always fails: two retries 1 s apart through the delayed queue, then one
  failure entry with ``"attempts": 3``.
* ``SoakFlaky`` fails its first ``fails`` completed runs, then succeeds (same policy).
* ``SoakUnique`` succeeds; the enqueuer sends it with ``enqueue_unique_by_key``.
* The workflow load's (:mod:`soakkit.workflow`), all tracked, each returning
  :func:`wf_result` as its kept result: ``SoakWfStep`` (sync) and ``SoakWfAsync`` succeed,
  ``SoakWfFlaky`` fails its first ``fails`` completed runs (same policy as ``SoakFlaky``),
  ``SoakWfFail`` fails once, for good.

Only redis-py, the package and :mod:`soakkit.ledger` are imported: this module runs inside
every worker process, and in every ``--fork-per-job`` child.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import redis

from pyresqueworker import Retry, current_job, job
from soakkit import ledger

__all__ = ["BIG_BYTES", "RETRY", "SoakError", "big_blob", "wf_result"]

BIG_BYTES = 1_000_000
# Fixed 1 s: quick enough for a 75 s soak, and every retry goes through the delayed queue and
# the scheduler (a 0 s delay would push it straight back to its queue).
RETRY = Retry(max=2, backoff="fixed", base=1)

_conn: Optional[redis.Redis] = None
_conn_pid = 0
_lock = threading.Lock()


class SoakError(Exception):
    """The failure of the failing kinds."""


def big_blob(job_id: str) -> str:
    """The 1 MB argument of ``SoakBig``: derived from the id, so the handler can check it."""
    unit = f"{job_id}/"
    return (unit * (BIG_BYTES // len(unit) + 1))[:BIG_BYTES]


def wf_result(job_id: str, number: int) -> list[Any]:
    """What a workflow job that succeeds returns (its kept result, as JSON decodes it)."""
    return [job_id, number * number]


def _ledger() -> redis.Redis:
    global _conn, _conn_pid
    with _lock:
        # A --fork-per-job child gets its own connection rather than its parent's socket.
        if _conn is None or _conn_pid != os.getpid():
            _conn = redis.Redis.from_url(os.environ["SOAK_LEDGER_URL"], socket_timeout=10)
            _conn_pid = os.getpid()
        return _conn


def _write_end(job_id: str, token: str, outcome: str, counts_failure: bool) -> None:
    def write() -> None:
        with _ledger().pipeline(transaction=True) as pipe:
            pipe.rpush(ledger.EVENTS, ledger.end_event(job_id, token, outcome, time.time()))
            if counts_failure:
                pipe.hincrby(ledger.FAILS, job_id, 1)
            pipe.execute()

    ledger.with_patience(write)


@contextmanager
def _recorded(job_id: str) -> Iterator[None]:
    """Record the start, then the end (``ok``, ``fail`` or ``cancel``) of the body."""
    token = uuid.uuid4().hex[:12]
    worker_id = current_job()[0].worker_id
    event = ledger.start_event(job_id, token, worker_id, os.getpid(), time.time())
    ledger.with_patience(lambda: _ledger().rpush(ledger.EVENTS, event))
    try:
        yield
    except Exception:
        _write_end(job_id, token, "fail", counts_failure=True)
        raise
    except BaseException:  # cancelled (asyncio) or the process is going down
        _write_end(job_id, token, "cancel", counts_failure=False)
        raise
    _write_end(job_id, token, "ok", counts_failure=False)


@job("SoakWork")
def soak_work(job_id: str, sleep_ms: int) -> None:
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)


@job("SoakAsync")
async def soak_async(job_id: str, sleep_ms: int) -> None:
    # The ledger writes block the loop for a round trip to a local Redis: negligible here.
    with _recorded(job_id):
        await asyncio.sleep(sleep_ms / 1000)


@job("SoakBig", max_concurrency=2)
def soak_big(job_id: str, sleep_ms: int, blob: str) -> None:
    with _recorded(job_id):
        if blob != big_blob(job_id):
            raise SoakError(f"1 MB argument of {job_id} arrived changed ({len(blob)} bytes)")
        time.sleep(sleep_ms / 1000)


@job("SoakBoom")
def soak_boom(job_id: str, sleep_ms: int) -> None:
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)
        raise SoakError(f"{job_id} fails by design")


@job("SoakDoomed", retry=RETRY)
def soak_doomed(job_id: str, sleep_ms: int) -> None:
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)
        raise SoakError(f"{job_id} fails on every attempt")


@job("SoakFlaky", retry=RETRY)
def soak_flaky(job_id: str, sleep_ms: int, fails: int) -> None:
    # Counted from completed failing runs, not from starts: a run cut short by a kill is not an
    # attempt in the retry policy's sense either.
    failed = int(ledger.with_patience(lambda: _ledger().hget(ledger.FAILS, job_id)) or 0)
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)
        if failed < fails:
            raise SoakError(f"{job_id} fails {failed + 1} of {fails}")


@job("SoakUnique")
def soak_unique(job_id: str, sleep_ms: int) -> None:
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)


@job("SoakWfStep")
def soak_wf_step(job_id: str, number: int, sleep_ms: int) -> list[Any]:
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)
    return wf_result(job_id, number)


@job("SoakWfAsync")
async def soak_wf_async(job_id: str, number: int, sleep_ms: int) -> list[Any]:
    with _recorded(job_id):
        await asyncio.sleep(sleep_ms / 1000)
    return wf_result(job_id, number)


@job("SoakWfFlaky", retry=RETRY)
def soak_wf_flaky(job_id: str, number: int, sleep_ms: int, fails: int) -> list[Any]:
    failed = int(ledger.with_patience(lambda: _ledger().hget(ledger.FAILS, job_id)) or 0)
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)
        if failed < fails:
            raise SoakError(f"{job_id} fails {failed + 1} of {fails}")
    return wf_result(job_id, number)


@job("SoakWfFail")
def soak_wf_fail(job_id: str, sleep_ms: int) -> None:
    with _recorded(job_id):
        time.sleep(sleep_ms / 1000)
        raise SoakError(f"{job_id} fails by design")
