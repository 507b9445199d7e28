"""What every kind of slot does around one job: build it from a claim, turn an exception or a
success into its completion, and interrupt a sync job past its timeout. Shared by thread slots
(:mod:`._slot`) and asyncio slots (:mod:`._aio_slot`).
"""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Optional

from ..jobs.registry import UnknownJobClass
from ..jobs.tracing import record_failure
from ..protocol import wire
from ..protocol.failure import exception_message, exception_name, ruby_backtrace
from ..protocol.job import Job, JobCall
from ..protocol.workflow import TRACK_FIELD
from ._claim_values import SUCCESS, Finish, JobResult
from ._held import Claimed
from ._retrying import Retrier
from ._tracked import result_json
from .isolation import JobTimeout

__all__ = ["failed", "failure_for", "interrupt_thread", "make_job", "succeeded"]


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


def failed(note_unknown_class: Callable[[str], None], retrier: Retrier, job: Job,
           call: Optional[JobCall], exc: BaseException) -> JobResult:
    """The result of a job that raised (anything: Ruby's ``rescue Object``); an unknown class
    is noted (the process says once how to register it)."""
    if isinstance(exc, UnknownJobClass):
        note_unknown_class(exc.class_name)
    record_failure(exc)  # on the job's span, when it is traced
    # "timeout" as with --fork-per-job, so logs, metrics and history name it alike.
    outcome = "timeout" if isinstance(exc, JobTimeout) else "failure"
    return JobResult(Finish("2", failure_for(job, exc)), outcome,
                     f"{exception_name(exc)}: {exception_message(exc)}",
                     retrier.may_retry(job, call, exc))


def succeeded(retrier: Retrier, job: Job, call: Optional[JobCall], performed: bool,
              value: Any = None) -> JobResult:
    """The result of a job that returned ``value`` (``performed`` False: a hook skipped it)."""
    finish = SUCCESS
    if retrier.policy(job, call) is not None:  # done retrying: drop the counter
        finish = Finish("1", cleanup=retrier.counter_key(job) or "")
    kept = result_json(job, value) if TRACK_FIELD in (job.payload or ()) else None
    return JobResult(finish, "success" if performed else "skipped", value=kept)


def interrupt_thread(thread_ident: int, timeout: float) -> None:
    """Raise JobTimeout in the thread running an overdue sync job (at its next bytecode)."""
    message = f"job exceeded its timeout of {timeout:g}s"
    # The C API raises a class, not an instance: give it the message through a subclass.
    overdue = type("JobTimeout", (JobTimeout,), {
        "__init__": lambda exc: JobTimeout.__init__(exc, message)})
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident),
                                               ctypes.py_object(overdue))
