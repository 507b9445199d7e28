"""A tracked job's end, as its workflow hears it (results, dependencies, batches).

A job whose payload carries ``"pyresque"`` (see :mod:`pyresqueworker.protocol.workflow`) gets
one more command with its completion: the workflow script's ``finish`` (or ``retrying``),
sent just ahead of the claim that completes it, in the same write (``Finish.ahead``). Sent
first, it is never lost to a worker killed in between: the job is still in its worker key
then, runs again, and the script counts a second end once. Any other job is not touched.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ..log import logger
from ..protocol import wire
from ..protocol.job import Job
from ..protocol.workflow import (
    Tracking,
    finish_command,
    retrying_command,
    tracking_of,
)
from ._claim_values import Finish, JobResult

__all__ = ["result_json", "tracked_finish"]

_SUCCEEDED = ("success", "skipped")


def result_json(job: Job, value: Any) -> Optional[str]:
    """A tracked job's return value as JSON, when its result is kept (else None)."""
    tracking = tracking_of(job.payload)
    if tracking is None or not tracking.result_ttl:
        return None
    try:
        return wire.dumps(value)
    except (TypeError, ValueError) as exc:  # kept as a failure to say why there is none
        logger.warning("a job's result is not JSON; none is kept", extra={
            "worker": job.worker_id, "class": job.class_name, "error": str(exc)})
        return json.dumps({"__unserializable__": f"{type(value).__name__}: {exc}"})


def tracked_finish(namespace: str, job: Job, result: JobResult, finish: Finish, outcome: str,
                   result_ttl: Optional[int] = None) -> Finish:
    """``finish`` with the workflow's command ahead of it, for a tracked job; else as is.
    ``result_ttl`` (``--result-ttl``) overrides the payload's."""
    tracking = tracking_of(job.payload)
    if tracking is None:
        return finish
    if outcome == "retried":
        command = retrying_command(namespace, tracking.job_id)
    elif outcome in _SUCCEEDED:
        command = finish_command(namespace, tracking, "succeeded", result.value or "null",
                                 _ttl(tracking, result_ttl))
    else:
        command = finish_command(namespace, tracking, "failed", failure_json(finish.entry))
    return finish._replace(ahead=(command,))


def _ttl(tracking: Tracking, override: Optional[int]) -> int:
    # The override applies to jobs that keep a result; it does not start keeping one.
    return override if override is not None and tracking.result_ttl else tracking.result_ttl


def failure_json(entry: str) -> str:
    """The failure as a job's record keeps it: Resque's entry without the payload."""
    try:
        failure = json.loads(entry)
    except ValueError:
        return json.dumps({"exception": "RuntimeError", "error": "no failure entry"})
    if not isinstance(failure, dict):
        return json.dumps({"exception": "RuntimeError", "error": "no failure entry"})
    failure.pop("payload", None)
    return json.dumps(failure)
