"""What an enqueue gives back (:class:`JobRef`) and how a batch is put together (:class:`Batch`).

A :class:`JobRef` is the job's id (a ``str``, so code that kept the old return value as text
keeps working) that can also wait for the job's result and say its state. Only a *tracked*
job can: one enqueued with ``result_ttl=``, ``depends_on=``, in a batch, or whose handler was
registered with ``@job(..., result_ttl=...)``; any other job costs nothing to follow because
nothing follows it, and its ref's :meth:`~JobRef.status` is ``"unknown"``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Optional, Protocol, Union, cast

from ..jobs.hooks import running_job
from ..jobs.job_ref import JobRef, new_job_id
from ..protocol import wire
from ..protocol.workflow import TRACK_FIELD, JobSpec, tracking_of
from ._commands import Op
from ._workflow_ops import JobFailed, batch_op

__all__ = ["AsyncBatch", "Batch", "JobFailed", "JobRef", "Tracked", "new_job_id"]

DependsOn = Iterable[Union["JobRef", str]]
Callback = tuple[str, Sequence[Any]]  # (class name, args): a job a batch enqueues when done


class Tracked:
    """How one tracked job is enqueued: its id and the payload fields that mark it."""

    def __init__(self, job_id: Optional[str], result_ttl: Optional[int], batch: str = "",
                 depends_on: Optional[DependsOn] = None,
                 on_dependency_failure: str = "cancel") -> None:
        if on_dependency_failure not in ("cancel", "run"):
            raise ValueError("on_dependency_failure must be 'cancel' or 'run'")
        if result_ttl is not None and (not isinstance(result_ttl, int) or result_ttl < 0):
            raise ValueError(f"result_ttl must be a whole number of seconds, got {result_ttl!r}")
        self.job_id = job_id or new_job_id()
        self.result_ttl = result_ttl or 0
        self.batch = batch
        self.depends_on = tuple(str.__str__(d) if isinstance(d, JobRef) else str(d)
                                for d in (depends_on or ()))
        self.on_dependency_failure = on_dependency_failure

    def fields(self, retry: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The payload's extra fields (the id first; a retry override kept)."""
        track: dict[str, Any] = {}
        if self.result_ttl:
            track["ttl"] = self.result_ttl
        if self.batch:
            track["batch"] = self.batch
        out: dict[str, Any] = {"id": self.job_id}
        if retry is not None:
            out["retry"] = retry
        out[TRACK_FIELD] = track
        return out

    def spec(self, queue: str, item: str, class_name: str, at: Optional[int] = None) -> JobSpec:
        return JobSpec(self.job_id, queue, item, class_name, self.batch, self.depends_on,
                       self.on_dependency_failure, at)


def current_batch() -> str:
    """The batch of the job running in this context (a job opening a batch nests it)."""
    current = running_job.get(None)
    if current is None:
        return ""
    tracking = tracking_of(current[0].payload)
    return tracking.batch if tracking is not None else ""


class Owner(Protocol):
    """What a batch asks of the client that makes it."""

    keys: wire.Keys

    def validate(self, queue: str, class_name: str) -> None: ...

    def queue_or_raise(self, class_name: str, queue: Optional[str]) -> str: ...

    def registered_result_ttl(self, class_name: str) -> Optional[int]: ...

    def job_ref(self, job_id: str, tracked: bool = False,
                scheduled_for: Optional[int] = None) -> JobRef: ...


class _BatchBase:
    """What a batch collects before it is opened (its jobs are pushed all at once)."""

    def __init__(self, owner: Owner, run: Callable[[Op[None]], Any],
                 on_success: Optional[Callback], on_complete: Optional[Callback],
                 queue: Optional[str], description: str, result_ttl: Optional[int]) -> None:
        self.id = new_job_id()
        self.parent = current_batch()
        self._owner, self._send = owner, run
        self._callbacks = (on_success, on_complete)
        self._queue = queue
        self.description = description
        self.result_ttl = result_ttl
        self.jobs: list[JobSpec] = []
        self.opened = False

    def enqueue_to(self, queue: str, class_name: str, *args: Any,
                   result_ttl: Optional[int] = None, depends_on: Optional[DependsOn] = None,
                   on_dependency_failure: str = "cancel", job_id: Optional[str] = None
                   ) -> JobRef:
        """Add a job to the batch (pushed when the batch's block ends); its ref."""
        if self.opened:
            raise RuntimeError("this batch is already open: enqueue inside its with block")
        self._owner.validate(queue, class_name)
        ttl = result_ttl if result_ttl is not None else self.result_ttl
        if ttl is None:
            ttl = self._owner.registered_result_ttl(class_name)
        track = Tracked(job_id, ttl, self.id, depends_on, on_dependency_failure)
        item = wire.with_fields(wire.encode_job(class_name, args), track.fields())
        self.jobs.append(track.spec(queue, item, class_name))
        return self._owner.job_ref(track.job_id, tracked=True)

    def enqueue(self, class_name: str, *args: Any, queue: Optional[str] = None,
                **options: Any) -> JobRef:
        """As :meth:`enqueue_to`, on the class's registered queue unless ``queue`` is given."""
        return self.enqueue_to(self._owner.queue_or_raise(class_name, queue), class_name,
                               *args, **options)

    def _open_op(self) -> Op[None]:
        owner = self._owner
        on_success, on_complete = self._callbacks
        queue = self._queue
        items = []
        for callback in (on_success, on_complete):
            if callback is None:
                items.append("")
                continue
            class_name, args = callback
            queue = queue or owner.queue_or_raise(class_name, None)
            items.append(wire.encode_job(class_name, list(args)))
        self.opened = True
        return batch_op(owner.keys, self.id, self.parent, queue or "", items[0], items[1],
                        self.description, self.jobs)


class Batch(_BatchBase):
    """``with client.batch(on_success=(...), on_complete=(...)) as b:`` — jobs added with
    :meth:`enqueue_to` / :meth:`enqueue` (or a handle's ``enqueue(..., batch=b)``) are pushed
    when the block ends, in one call; nothing is pushed if it raises."""

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if kind is None:
            self.open()

    def open(self) -> None:
        """Push the batch now (what leaving the ``with`` block does)."""
        self._send(self._open_op())


class AsyncBatch(_BatchBase):
    """:class:`Batch` for :class:`~pyresqueworker.AsyncClient`: ``async with``."""

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, kind: Optional[type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if kind is None:
            await self.open()

    async def open(self) -> None:
        """Push the batch now (what leaving the ``async with`` block does)."""
        await cast(Awaitable[None], self._send(self._open_op()))
