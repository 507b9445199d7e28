"""The end of a worker process: what it gives back at its shutdown deadline, unregistering,
the last history records, each step riding out a short Redis outage.

Functions of the process (typed by :class:`~pyresqueworker.worker._host.WorkerHost`), kept
out of :mod:`~pyresqueworker.worker._process` so it reads as the process's life.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from ..log import logger
from ..protocol._outage import Backoff
from ..protocol.failure import DIRTY_EXIT
from ..protocol.redis_errors import REDIS_ERRORS
from ._claim import Claimer, Finish
from ._host import WorkerHost
from ._job_outcome import failure_for
from ._signals import kill_pid
from ._slot_view import SlotView
from ._startup import WorkerError

__all__ = ["give_back_running_jobs", "retry_while_stopping", "unregister", "write_history"]

T = TypeVar("T")


def write_history(process: WorkerHost) -> None:
    """Write the last buffered history records at a clean stop (best effort)."""
    if process.history is None or not len(process.history):
        return
    try:
        process.history.write(process.conn)
    except REDIS_ERRORS as exc:
        logger.warning("history records not written", extra={
            "records": len(process.history), "error": str(exc)})


def unregister(process: WorkerHost) -> None:
    """Unregister every slot; a job still in a worker key here was claimed but never
    started (its reply was in flight at the deadline), so it goes back to its queue."""
    for worker_id in process.worker_ids:
        outcome = process.pruner.recover(worker_id, DIRTY_EXIT, action="requeue")
        if outcome != "idle":
            process.metrics.recovered(1, outcome)
            logger.warning("gave back a claimed job that never started",
                           extra={"worker": worker_id})


def retry_while_stopping(step: Callable[[], T], seconds: float = 10.0) -> T:
    """Run a shutdown step, riding out a short Redis outage; then give up with one line."""
    backoff = Backoff(base=0.1, cap=1.0)
    deadline = time.monotonic() + seconds
    while True:
        try:
            return step()
        except REDIS_ERRORS as exc:
            if time.monotonic() > deadline:
                raise WorkerError(
                    f"Redis unreachable while stopping ({exc}); the next prune will "
                    "recover this worker's jobs"
                ) from None
            time.sleep(backoff.next_delay())


def give_back_running_jobs(process: WorkerHost) -> list[SlotView]:
    """Requeue (default) or fail the jobs still running at the deadline; returns the slots."""
    abandoned: list[SlotView] = []
    for slot in process.slots:
        job = slot.abandon()
        if job is None:
            continue
        if slot.child is not None:  # --fork-per-job: the child must not run on
            kill_pid(slot.child)
        abandoned.append(slot)
        claimer = Claimer(process.conn, process.keys, slot.worker_id)
        if process.config.on_shutdown_timeout == "requeue" and job.payload is not None:
            claimer.requeue(job.queue, job.raw)
            outcome = "requeued"
        else:
            dirty = RuntimeError("Job still being processed")
            entry = failure_for(job, dirty, name=DIRTY_EXIT)
            claimer.claim((), Finish("3", entry), "")
            try:
                process.registry.run_failure_hooks(job, dirty)
            except Exception as exc:
                logger.error("on_failure hook error", extra={"error": repr(exc)})
            outcome = "failed"
        logger.warning("job still running at shutdown", extra={
            "worker": slot.worker_id, "queue": job.queue, "class": job.class_name,
            "outcome": outcome})
    return abandoned
