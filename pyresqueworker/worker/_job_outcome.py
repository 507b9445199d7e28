"""What every kind of slot does around one job: build it from a claim, turn an exception or a
success into its completion, settle retries, and report the outcome (history, metrics, the
per-job log line). Shared by thread slots (:mod:`._slot`) and asyncio slots (:mod:`._aio_slot`).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import Optional

from ..jobs.registry import UnknownJobClass
from ..jobs.tracing import record_failure
from ..log import log_fields, logger
from ..protocol import wire
from ..protocol.failure import exception_message, exception_name, ruby_backtrace
from ..protocol.job import Job, JobCall
from ..protocol.redis_errors import REDIS_ERRORS
from ._claim import SUCCESS, Claimed, Finish
from ._host import WorkerHost
from ._retrying import Retrier
from .isolation import JobResult, JobTimeout

__all__ = ["JobTracking", "failed", "failure_for", "interrupt_thread", "make_job", "report",
           "retry_or_fail", "succeeded"]

_IDLE, _RUNNING, _FINISHING, _ABANDONED = "idle", "running", "finishing", "abandoned"


class JobTracking:
    """The running job of a slot, shared with the main and housekeeping threads (the process
    title, the shutdown deadline, the timeout watchdog), under ``lock``."""

    process: WorkerHost
    worker_id: str

    def _init_tracking(self) -> None:
        self.lock = threading.Lock()
        self.state = _IDLE
        self.job: Optional[Job] = None
        self.job_started = 0.0  # epoch seconds

    def _start_job(self, claimed: Claimed) -> Job:
        job = make_job(claimed, self.worker_id)
        with self.lock:
            self.job, self.state, self.job_started = job, _RUNNING, time.time()
        self.process.metrics.job_started(job)
        return job

    def _job_ran(self) -> bool:
        """The job returned; False if the shutdown abandoned it meanwhile (the process has
        dealt with it), else it is now being finished."""
        with self.lock:
            if self.state == _ABANDONED:
                return False
            self.state = _FINISHING
            return True

    def _job_done(self) -> None:
        with self.lock:
            self.job, self.state = None, _IDLE
        self.process.job_finished(self)  # type: ignore[arg-type]

    def _internal_error(self, claimed: Claimed, exc: Exception) -> Optional[Finish]:
        """An error of our own bookkeeping around a job fails the job, never drops it (it was
        claimed into this slot's worker key, which the next claim overwrites); None if the
        shutdown abandoned it."""
        logger.exception("internal error around a job; failing it", extra={
            "worker": self.worker_id, "queue": claimed.queue})
        with self.lock:
            if self.state == _ABANDONED:
                return None
            self.job, self.state = None, _IDLE
        return Finish("2", failure_for(make_job(claimed, self.worker_id), exc))

    def abandon(self) -> Optional[Job]:
        """Called at the shutdown deadline: returns the job if it was still running."""
        with self.lock:
            if self.state != _RUNNING:
                return None
            self.state = _ABANDONED
            return self.job


def make_job(claimed: Claimed, worker_id: str) -> Job:
    job = Job(queue=claimed.queue, raw=claimed.raw, worker_id=worker_id)
    if claimed.payload is not None:  # a large item the claim already decoded to check it
        job.payload = claimed.payload
        return job
    try:
        payload = wire.loads(claimed.raw)
    except wire.DecodeError as exc:
        job.decode_error = str(exc)
        return job
    if isinstance(payload, dict):
        job.payload = payload
    else:
        job.decode_error = "payload is not a JSON object"
    return job


def failure_for(job: Job, exc: Optional[BaseException], name: Optional[str] = None,
                message: Optional[str] = None) -> str:
    """The failure entry for ``job``; the payload is embedded byte for byte when it is JSON.

    ``name`` and ``message`` describe a failure with no exception (a dirty exit, a timeout).
    """
    return wire.failure_entry(
        failed_at_text=wire.failed_at(),
        payload=job.raw_text if job.payload is None else None,
        raw_payload=None if job.payload is None else job.raw.decode("utf-8"),
        exception=name or (exception_name(exc) if exc else "RuntimeError"),
        error=message or (exception_message(exc) if exc else ""),
        backtrace=ruby_backtrace(exc.__traceback__) if exc and exc.__traceback__ else [],
        worker=job.worker_id,
        queue=job.queue,
    )


def failed(process: WorkerHost, retrier: Retrier, job: Job, call: Optional[JobCall],
           exc: BaseException) -> JobResult:
    """The result of a job that raised (anything: Ruby's ``rescue Object``)."""
    if isinstance(exc, UnknownJobClass):
        process.note_unknown_class(exc.class_name)
    record_failure(exc)  # on the job's span, when it is traced
    # "timeout" as with --fork-per-job, so logs, metrics and history name it alike.
    outcome = "timeout" if isinstance(exc, JobTimeout) else "failure"
    return JobResult(Finish("2", failure_for(job, exc)), outcome,
                     f"{exception_name(exc)}: {exception_message(exc)}",
                     retrier.may_retry(job, call, exc))


def succeeded(retrier: Retrier, job: Job, call: Optional[JobCall], performed: bool) -> JobResult:
    """The result of a job that returned (``performed`` False: a hook skipped it)."""
    finish = SUCCESS
    if retrier.policy(job, call) is not None:  # done retrying: drop the counter
        finish = Finish("1", cleanup=retrier.counter_key(job) or "")
    return JobResult(finish, "success" if performed else "skipped")


def retry_or_fail(retrier: Retrier, worker_id: str, job: Job,
                  failure: Finish) -> Optional[Finish]:
    """Schedule a retry if the job's policy allows (see :mod:`._retrying`): None then."""
    try:
        return retrier.settle(job, failure)
    except REDIS_ERRORS as exc:
        # The job is still in this slot's worker key: failing it keeps it, retrying later
        # would need Redis now. It ends in the failed list, where it can be retried.
        logger.warning("could not schedule a retry, failing the job", extra={
            "worker": worker_id, "class": job.class_name, "error": str(exc)})
        return failure


def report(process: WorkerHost, worker_id: str, job: Job, outcome: str,
           duration_ms: float, error: Optional[str]) -> None:
    """History, metrics and the per-job log line of a finished job."""
    if process.history is not None:
        process.history.add(job, outcome, duration_ms, error)
    process.metrics.job_finished(job, outcome, duration_ms / 1000.0)
    if logger.isEnabledFor(logging.INFO):
        extra = {"worker": worker_id, "queue": job.queue, "class": job.class_name,
                 "duration_ms": round(duration_ms, 3), "outcome": outcome}
        if error is not None:
            extra["error"] = error
        log_fields(logging.WARNING if error else logging.INFO, "job done", extra)


def interrupt_thread(thread_ident: int, timeout: float) -> None:
    """Raise JobTimeout in the thread running an overdue sync job (at its next bytecode)."""
    message = f"job exceeded its timeout of {timeout:g}s"
    # The C API raises a class, not an instance: give it the message through a subclass.
    overdue = type("JobTimeout", (JobTimeout,), {
        "__init__": lambda exc: JobTimeout.__init__(exc, message)})
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident),
                                               ctypes.py_object(overdue))
