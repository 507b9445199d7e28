"""Performing one job in asyncio mode: ``async def`` handlers on the loop, sync ones in threads.

An ``async def`` handler runs inside its slot's task: the coroutine is awaited there, between
the class's sync ``before_perform*`` / ``around_perform*`` / ``after_perform*`` hooks (Resque's
order, from the one :func:`~pyresqueworker.jobs.hooks.hook_trip`); its timeout cancels it. A sync
handler — or any job when middleware is registered, since middleware calls ``call_next()``
synchronously — runs in a bounded thread pool, exactly as in thread mode (soft timeout raised
in its thread), while the slot's task awaits it: sync handlers keep their threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Coroutine
from typing import Any, Callable, Optional, Protocol, TypeVar

from ..jobs.hooks import Handler, adrive_hooks, hook_trip, run_failure_hooks, running_job
from ..protocol.job import Job, JobCall
from ._claim_values import JobResult
from ._hosts import SlotHost
from ._job_outcome import failed, succeeded
from ._retrying import Retrier
from .isolation import JobTimeout

__all__ = ["AioSlotHost", "perform", "run_limited"]

T = TypeVar("T")


class JobThreads(Protocol):
    """Where an asyncio slot runs what is not a coroutine (the runtime)."""

    loop: asyncio.AbstractEventLoop

    async def in_job_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a sync job in the job thread pool."""


class AioSlotHost(Protocol):
    """What running one job needs of its asyncio slot."""

    @property
    def process(self) -> SlotHost: ...

    @property
    def runtime(self) -> JobThreads: ...

    retrier: Retrier
    lock: threading.Lock
    thread_ident: Optional[int]
    deadline: Optional[float]
    timeout: float


async def perform(slot: AioSlotHost, job: Job) -> JobResult:
    """Decode, dispatch and run one job; every error becomes a failure entry."""
    process = slot.process
    registry = process.registry
    call: Optional[JobCall] = None
    try:
        call = registry.decode(job)
        handler = registry.handler(call.class_name)
        timeout = handler.timeout or process.config.job_timeout
        if handler.is_async and not registry.has_middleware:
            performed, value = await _run_on_loop(handler, job, call, timeout)
        else:
            # With this task's context (the job's span), as asyncio.to_thread passes it.
            performed, value = await slot.runtime.in_job_thread(
                contextvars.copy_context().run, _run_in_thread, slot, job, call, timeout)
    except BaseException as exc:  # Ruby's ``rescue Object``; a cancel at shutdown ends here too
        return failed(process.note_unknown_class, slot.retrier, job, call, exc)
    return succeeded(slot.retrier, job, call, performed, value)


async def run_limited(awaitable: Any, limit: Optional[float]) -> Any:
    """Await ``awaitable`` in this task; past ``limit`` seconds cancel it and raise JobTimeout.

    (A timer that cancels the task, not ``wait_for``: no extra task per job; Python 3.9 has
    no ``asyncio.timeout``.)
    """
    if limit is None:
        return await awaitable
    task = asyncio.current_task()
    assert task is not None
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        task.cancel()

    timer = asyncio.get_running_loop().call_later(limit, expire)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if not expired:
            raise  # a real cancel (shutdown)
        uncancel = getattr(task, "uncancel", None)  # 3.11+: this cancel has been handled
        if uncancel is not None:
            uncancel()
        raise JobTimeout(f"job exceeded its timeout of {limit:g}s") from None
    finally:
        timer.cancel()


async def _run_on_loop(handler: Handler, job: Job, call: JobCall,
                       limit: Optional[float]) -> tuple[bool, Any]:
    """An async handler awaited in this task, where :func:`hook_trip` says."""
    token = running_job.set((job, call))
    owner: Any = None
    try:
        owner = handler.owner()
        return await adrive_hooks(hook_trip(handler, owner, call),
                                  lambda owner: _invoke(handler, owner, call, limit))
    except BaseException as exc:
        run_failure_hooks(handler, owner, exc, call)
        raise
    finally:
        running_job.reset(token)


async def _invoke(handler: Handler, owner: Any, call: JobCall, limit: Optional[float]) -> Any:
    fn = owner.perform if handler.is_class else owner
    return await run_limited(fn(*call.args, **call.kwargs), limit)


def _run_in_thread(slot: AioSlotHost, job: Job, call: JobCall, limit: Optional[float]
                   ) -> tuple[bool, Any]:
    """A pool thread: hooks and handler as in thread mode; the housekeeping watchdog raises
    JobTimeout here past the deadline (see :meth:`AioSlot.interrupt_if_overdue`)."""
    loop = slot.runtime.loop

    def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
        with slot.lock:
            deadline, slot.deadline = slot.deadline, None  # the cancel enforces it now
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return asyncio.run_coroutine_threadsafe(run_limited(coro, left), loop).result()

    with slot.lock:
        slot.thread_ident = threading.get_ident()
        slot.timeout = limit or 0.0
        slot.deadline = None if limit is None else time.monotonic() + limit
    try:
        return slot.process.registry.perform_call(job, call, run_async=run_async)
    finally:
        with slot.lock:
            slot.deadline = slot.thread_ident = None
