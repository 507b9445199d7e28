"""Job handlers for the reliability tests, loaded with ``pyresque-work --app reliability_jobs``.

Every handler reports to the Redis named by ``REL_REDIS_URL`` (a ledger apart from the Redis
under test, for the fault tests), else ``REDIS_URL``, under ``rel:*`` keys (outside the
``resque:`` namespace), so a test can account for every job from outside the worker:

* ``rel:done`` (set) and ``rel:runs`` (hash id -> runs): :func:`rel_record`. Both are written in
  one MULTI, so "done" and its run count never disagree; a count above 1 is an at-least-once
  duplicate (the job ran again after its worker was killed before it could finish it).
* ``rel:ok`` (list): the raw queue item of every :func:`rel_echo` that succeeded.

The handlers retry their own Redis writes for a while, so a Redis restart mid-job delays a job
instead of failing it: the outage test then expects zero failures as well as zero lost jobs.

The second half of the module is used by the tests only (a worker never calls it): pushing
``RelRecord`` jobs, accounting for them (:func:`account`: done, failed, lost, duplicates) and
:class:`Fleet`, the worker processes of one test.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import redis

from pyresqueworker import Job, JobCall, current_job, job
from pyresqueworker.protocol.wire import encode_job

__all__ = [
    "DONE", "OK", "RUNS", "Accounting", "Fleet", "RelError", "account", "drained", "held_jobs",
    "push_records", "worker_leftovers",
]

DONE, RUNS, OK = "rel:done", "rel:runs", "rel:ok"
_WRITE_PATIENCE = 30.0  # seconds a handler keeps retrying its own write through an outage

T = TypeVar("T")
_client: Optional[redis.Redis] = None
_client_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    with _client_lock:
        if _client is None:
            url = os.environ.get("REL_REDIS_URL") or os.environ["REDIS_URL"]
            _client = redis.Redis.from_url(url, socket_timeout=5)
        return _client


def _with_retry(write: Callable[[redis.Redis], T]) -> T:
    """Run ``write``, retrying connection errors (Redis restarting) for a while."""
    deadline = time.monotonic() + _WRITE_PATIENCE
    while True:
        try:
            return write(_redis())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class RelError(Exception):
    """Raised by :func:`rel_boom`."""


@job("RelRecord")
def rel_record(job_id: str, sleep_ms: float = 0, padding: str = "") -> None:
    """Sleep ``sleep_ms`` (a job that takes a while), then mark ``job_id`` done and count it.
    (``padding`` only makes the payload large.)"""
    if sleep_ms:
        time.sleep(sleep_ms / 1000.0)

    def write(conn: redis.Redis) -> None:
        with conn.pipeline(transaction=True) as pipe:
            pipe.sadd(DONE, job_id)
            pipe.hincrby(RUNS, job_id, 1)
            pipe.execute()

    _with_retry(write)


@job("RelEcho")
def rel_echo(*_args: Any, **_kwargs: Any) -> None:
    """Accept any arguments; push the job's raw bytes to ``rel:ok``."""
    raw = current_job()[0].raw
    _with_retry(lambda conn: conn.rpush(OK, raw))


@job("RelBoom")
def rel_boom(*_args: Any) -> None:
    """Always fails."""
    raise RelError("rel boom")


@job("RelTakesTwo")
def rel_takes_two(first: Any, second: Any) -> None:
    """Exactly two arguments; any other count is a TypeError failure."""
    raw = current_job()[0].raw
    _with_retry(lambda conn: conn.rpush(OK, raw))


def _exploding_decoder(_job: Job) -> JobCall:
    raise ZeroDivisionError("the decoder divided by zero")


@job("RelBadDecoder", decoder=_exploding_decoder)
def rel_bad_decoder(*_args: Any) -> None:
    """Never runs: its decoder always raises."""
    raise AssertionError("unreachable: the decoder raises first")



# -- the test side: pushing these jobs and accounting for them ---------------------------------


def push_records(conn: redis.Redis, queue: str, ids: Sequence[str],
                 sleep_ms: Callable[[int], float] = lambda _i: 0,
                 namespace: str = "resque:", padding: int = 0) -> None:
    """RPUSH one :func:`rel_record` job per id, as ``Resque.enqueue`` writes it, in chunks;
    ``padding`` bytes more per payload make them large (taken outside the claim script)."""
    conn.sadd(namespace + "queues", queue)
    items = []
    for index, job_id in enumerate(ids):
        pause = sleep_ms(index)
        args: list[Any] = [job_id, pause, "x" * padding] if padding else [job_id, pause]
        items.append(encode_job("RelRecord", args if pause or padding else [job_id]))
    for start in range(0, len(items), 500):
        conn.rpush(namespace + "queue:" + queue, *items[start:start + 500])


@dataclass
class Accounting:
    """Where every pushed :func:`rel_record` job ended up."""

    expected: tuple[str, ...]
    done: set[str]
    failed: dict[str, list[str]]  # id -> exception names of its failure entries
    runs: dict[str, int]  # id -> times the handler ran to its end

    @property
    def lost(self) -> list[str]:
        """Ids neither done nor failed: the number that must be zero."""
        return sorted(set(self.expected) - self.done - set(self.failed))

    @property
    def duplicate_runs(self) -> int:
        """Runs beyond one per job (at-least-once delivery after a kill)."""
        return sum(count - 1 for count in self.runs.values() if count > 1)

    @property
    def duplicated_jobs(self) -> int:
        return sum(1 for count in self.runs.values() if count > 1)

    def summary(self) -> str:
        failures = sum(len(v) for v in self.failed.values())
        return (f"jobs={len(self.expected)} done={len(self.done)} failed={failures} "
                f"lost={len(self.lost)} duplicate_runs={self.duplicate_runs} "
                f"duplicated_jobs={self.duplicated_jobs}")


def account(conn: redis.Redis, ids: Sequence[str], namespace: str = "resque:") -> Accounting:
    """Read ``rel:done``, ``rel:runs`` and the failed list for the jobs ``ids``."""
    done = {m.decode() for m in conn.smembers(DONE)}
    runs = {k.decode(): int(v) for k, v in conn.hgetall(RUNS).items()}
    failed: dict[str, list[str]] = {}
    for raw in conn.lrange(namespace + "failed", 0, -1):
        entry = json.loads(raw)
        payload = entry.get("payload")
        if isinstance(payload, dict) and payload.get("class") == "RelRecord" and payload["args"]:
            failed.setdefault(str(payload["args"][0]), []).append(str(entry["exception"]))
    return Accounting(tuple(ids), done, failed, runs)


def held_jobs(conn: redis.Redis, namespace: str = "resque:") -> list[bytes]:
    """The ``worker:<id>`` keys that hold a job (not the ``:started`` ones)."""
    return [k for k in conn.keys(namespace + "worker:*") if not k.endswith(b":started")]


def drained(conn: redis.Redis, queue: str, namespace: str = "resque:") -> bool:
    """Nothing queued and nothing held: every job is then done, failed, or lost for good."""
    return not conn.llen(namespace + "queue:" + queue) and not held_jobs(conn, namespace)


def worker_leftovers(conn: redis.Redis, queue: str, namespace: str = "resque:") -> dict[str, Any]:
    """Everything that should be gone once every worker has stopped and the queue is drained."""
    left: dict[str, Any] = {
        "queue length": conn.llen(namespace + "queue:" + queue),
        "worker keys": sorted(k.decode() for k in conn.keys(namespace + "worker:*")),
        "workers": sorted(m.decode() for m in conn.smembers(namespace + "workers")),
        "heartbeats": sorted(f.decode() for f in conn.hkeys(namespace + "workers:heartbeat")),
        "per-worker stats": sorted(k.decode() for k in conn.keys(namespace + "stat:*:*")),
    }
    return {name: value for name, value in left.items() if value}


class Fleet:
    """The ``pyresque-work`` processes of one test (test process side); see :meth:`close`."""

    def __init__(self, redis_url: str, *args: str) -> None:
        self.redis_url = redis_url
        self.args = args
        self.running: list[Any] = []  # worker_helpers.WorkerProc
        self.started: list[Any] = []

    def start(self, *extra: str) -> Any:
        """Start one worker with this fleet's arguments (and ``extra``)."""
        from worker_helpers import start_worker  # the tests' helper; never needed by a worker

        proc = start_worker(self.redis_url, "--app", "reliability_jobs", "--redis",
                            self.redis_url, *self.args, *extra, defaults=False)
        self.running.append(proc)
        self.started.append(proc)
        return proc

    def kill(self, proc: Any) -> None:
        """``kill -9`` one worker and reap it."""
        proc.kill()
        self.running.remove(proc)

    def stop_all(self, sig: int, timeout: float = 20.0) -> list[int]:
        """Signal every running worker, then wait for each; returns the exit codes."""
        for proc in self.running:
            proc.send(sig)
        codes = [proc.wait_exit(timeout) for proc in self.running]
        self.running.clear()
        return codes

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float) -> None:
        """``worker_helpers.wait_until``, whose timeout also shows what is left and the logs."""
        from worker_helpers import wait_until

        try:
            wait_until(condition, what, timeout, 0.05)
        except AssertionError as exc:
            conn = redis.Redis.from_url(self.redis_url)
            try:
                queue = self.args[self.args.index("--queues") + 1]
                left = worker_leftovers(conn, queue)
            finally:
                conn.close()
            raise AssertionError(f"{exc}\nleft in Redis: {left}\n{self.logs(2)}") from None

    def logs(self, last: int = 3) -> str:
        """The logs of the last ``last`` workers started, for an assertion message."""
        return "\n".join(f"--- worker {p.pid}:\n{p.log()[-4000:]}" for p in self.started[-last:])

    def close(self) -> None:
        """Kill whatever still runs and remove the log directories."""
        for proc in self.started:
            proc.cleanup()
        self.running.clear()
