"""Run jobs inline, without a worker: Python's ``Resque.inline`` for tests.

:func:`run_inline` takes a payload exactly as it would sit in a queue and sends it through the
same decode -> middleware -> hooks -> handler path a worker uses, raising whatever the job
raises. :func:`perform_enqueued` drains a queue of a Redis (real or fakeredis) the same way,
so a test can enqueue through the client and then run what was enqueued.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Union

from ..protocol.job import Job
from ..protocol.wire import DecodeError, Keys, dumps, loads
from .hooks import RunAsync
from .registry import Registry, default_registry

__all__ = ["perform_enqueued", "run_inline"]

INLINE_WORKER_ID = "inline:0:inline"


class QueueOwner(Protocol):
    """Anything with a redis-py client and the namespace's
    :class:`~pyresqueworker.protocol.wire.Keys`
    (the :class:`~pyresqueworker.Client` has both)."""

    @property
    def redis(self) -> Any: ...

    @property
    def keys(self) -> Keys: ...


def _job_from(raw: bytes, queue: str) -> Job:
    try:
        payload = loads(raw)
    except DecodeError as exc:
        return Job(queue, raw, None, INLINE_WORKER_ID, str(exc))
    if not isinstance(payload, dict):
        return Job(queue, raw, None, INLINE_WORKER_ID, "payload is not a JSON object")
    return Job(queue, raw, payload, INLINE_WORKER_ID)


def run_inline(
    payload: Union[dict[str, Any], str, bytes],
    *,
    registry: Optional[Registry] = None,
    queue: str = "inline",
    run_async: Optional[RunAsync] = None,
) -> Any:
    """Perform one job now, in this thread; return the handler's result.

    A dict payload goes through JSON first, as Ruby's ``Resque.inline`` does, so the handler
    sees what a worker would (tuples become lists; non-JSON values fail here, not in
    production). Returns None if a hook or middleware skipped the job. Raises the job's
    exception, :class:`~pyresqueworker.jobs.registry.PayloadError` for a bad payload and
    :class:`~pyresqueworker.jobs.registry.UnknownJobClass` for an unregistered class.
    """
    if isinstance(payload, dict):
        raw = dumps(payload).encode("utf-8")
    elif isinstance(payload, str):
        raw = payload.encode("utf-8")
    else:
        raw = bytes(payload)
    return _run(_job_from(raw, queue), registry or default_registry, run_async)


def _run(job: Job, registry: Registry, run_async: Optional[RunAsync]) -> Any:
    call = registry.decode(job)
    return registry.perform_call(job, call, run_async=run_async)[1]


def perform_enqueued(
    client: QueueOwner,
    queue: str,
    *,
    registry: Optional[Registry] = None,
    limit: Optional[int] = None,
    run_async: Optional[RunAsync] = None,
    on_job: Optional[Callable[[Job], None]] = None,
) -> list[Any]:
    """Pop the jobs of ``queue`` (``LPOP``, as Resque does) and run each inline.

    Stops when the queue is empty or after ``limit`` jobs; returns the handlers' results in
    order. A job that raises stops the run and the exception propagates (the job has already
    been popped). ``on_job`` is called with each job before it runs.
    """
    registry = registry or default_registry
    key = client.keys.queue(queue)
    results: list[Any] = []
    while limit is None or len(results) < limit:
        raw = client.redis.lpop(key)
        if raw is None:
            break
        job = _job_from(raw if isinstance(raw, bytes) else str(raw).encode("utf-8"), queue)
        if on_job is not None:
            on_job(job)
        results.append(_run(job, registry, run_async))
    return results
