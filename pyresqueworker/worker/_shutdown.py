"""The end of a worker process: what it gives back at its shutdown deadline, unregistering,
the last history records, each step riding out a short Redis outage.

Functions of the process (typed by :class:`ShutdownHost`), kept out of
:mod:`~pyresqueworker.worker._process` so it reads as the process's life.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Callable, Optional, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..client.history import HistoryBuffer
from ..jobs.registry import Registry
from ..log import logger
from ..protocol import wire
from ..protocol._outage import STOP_PATIENCE, Backoff
from ..protocol.connection import ConnectionFactory
from ..protocol.failure import DIRTY_EXIT
from ..protocol.redis_errors import REDIS_ERRORS
from ._claim import Claimer
from ._claim_values import Finish
from ._job_outcome import failure_for
from ._prune import Pruner
from ._signals import kill_pid
from ._slot_view import SlotView
from ._startup import WorkerError
from .config import WorkerConfig
from .metrics import Metrics

__all__ = ["ShutdownHost", "begin_stop", "give_back_running_jobs", "retry_while_stopping",
           "unregister", "write_history"]

T = TypeVar("T")

#: Timeouts of one shutdown call: a call sent into a black hole must not use up the stop's
#: patience (STOP_PATIENCE) on its own.
STOP_CALL_TIMEOUT = 1.0


class _Patience(threading.local):
    # When the shutdown steps give up on Redis: set by the first that finds it away, shared
    # by the steps after it (a stop gives up once, not once per step), cleared by a success.
    give_up_at: Optional[float] = None


_patience = _Patience()


class ShutdownHost(Protocol):
    """What the shutdown steps read of their worker process."""

    config: WorkerConfig
    registry: Registry
    keys: wire.Keys
    connections: ConnectionFactory  # the stop's own short-timeout links come from it
    worker_ids: list[str]
    slots: list[SlotView]
    pruner: Pruner
    metrics: Metrics
    history: Optional[HistoryBuffer]


def begin_stop() -> None:
    """A new stop starts with all its patience: what an earlier ``run_worker`` in this thread
    gave up on says nothing about this one's Redis."""
    _patience.give_up_at = None


@contextlib.contextmanager
def _stop_link(process: ShutdownHost) -> Iterator[redis.Redis]:
    """A connection for one shutdown step, with short timeouts and no retries of its own
    (the process's connection waits 5 s and more on a silent Redis)."""
    conn = process.connections.connect(
        single_connection_client=True, socket_timeout=STOP_CALL_TIMEOUT,
        socket_connect_timeout=STOP_CALL_TIMEOUT, retry=Retry(NoBackoff(), 0))
    try:
        yield conn
    finally:
        conn.close()


def write_history(process: ShutdownHost) -> None:
    """Write the last buffered history records at a clean stop (best effort)."""
    if process.history is None or not len(process.history):
        return
    if _patience.give_up_at is not None:  # an earlier step found Redis gone
        logger.warning("history records not written", extra={
            "records": len(process.history), "error": "Redis unreachable"})
        return
    try:
        with _stop_link(process) as conn:
            process.history.write(conn)
    except REDIS_ERRORS as exc:
        logger.warning("history records not written", extra={
            "records": len(process.history), "error": str(exc)})


def unregister(process: ShutdownHost) -> None:
    """Unregister every slot; a job still in a worker key here was claimed but never
    started (its reply was in flight at the deadline), so it goes back to its queue."""
    with _stop_link(process) as conn:
        pruner = dataclasses.replace(process.pruner, conn=conn)
        outcomes = [(worker_id, pruner.recover(worker_id, DIRTY_EXIT, action="requeue"))
                    for worker_id in process.worker_ids]
    for worker_id, outcome in outcomes:
        if outcome != "idle":
            process.metrics.recovered(1, outcome)
            logger.warning("gave back a claimed job that never started",
                           extra={"worker": worker_id})


def retry_while_stopping(step: Callable[[], T], seconds: float = STOP_PATIENCE) -> T:
    """Run a shutdown step, riding out a Redis outage of up to ``seconds`` (counted from the
    first failure of any step of this stop); then give up with one line. The jobs are then
    where recovery finds them (the worker keys), so a dead Redis costs a stop seconds, not
    the many a retried call would wait in a black hole."""
    backoff = Backoff(base=0.05, cap=0.5)
    while True:
        started = time.monotonic()
        try:
            result = step()
        except REDIS_ERRORS as exc:
            now = time.monotonic()
            if _patience.give_up_at is None:
                _patience.give_up_at = started + seconds
            if now >= _patience.give_up_at:
                raise WorkerError(
                    f"Redis unreachable while stopping ({exc}); the next prune will "
                    "recover this worker's jobs"
                ) from None
            time.sleep(min(backoff.next_delay(), _patience.give_up_at - now))
        else:
            _patience.give_up_at = None
            return result


def give_back_running_jobs(process: ShutdownHost) -> list[SlotView]:
    """Requeue (default) or fail the jobs still running at the deadline; returns the slots."""
    abandoned: list[SlotView] = []
    for slot in process.slots:
        job = slot.abandon()
        if job is None:
            continue
        if slot.child is not None:  # --fork-per-job: the child must not run on
            kill_pid(slot.child)
        abandoned.append(slot)
        if process.config.on_shutdown_timeout == "requeue" and job.payload is not None:
            with _stop_link(process) as conn:
                Claimer(conn, process.keys, slot.worker_id).requeue(job.queue, job.raw)
            outcome = "requeued"
        else:
            dirty = RuntimeError("Job still being processed")
            entry = failure_for(job, dirty, name=DIRTY_EXIT)
            with _stop_link(process) as conn:
                Claimer(conn, process.keys, slot.worker_id).claim((), Finish("3", entry), "")
            try:
                process.registry.run_failure_hooks(job, dirty)
            except Exception as exc:
                logger.error("on_failure hook error", extra={"error": repr(exc)})
            outcome = "failed"
        logger.warning("job still running at shutdown", extra={
            "worker": slot.worker_id, "queue": job.queue, "class": job.class_name,
            "outcome": outcome})
    return abandoned
