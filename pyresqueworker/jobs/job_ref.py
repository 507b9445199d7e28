"""What enqueueing returns: :class:`JobRef`, the job's id (a ``str``) that can also wait for
the job's result and say its state, through the client that enqueued it.

Only a *tracked* job can: one enqueued with ``result_ttl=``, ``depends_on=``, in a batch, or
whose handler was registered with ``@job(..., result_ttl=...)`` (see ``docs/workflows.md``).
It lives in this layer so that typed job handles return it too.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Optional, Protocol, Union

__all__ = ["AsyncWaits", "JobRef", "Waits", "new_job_id"]


def new_job_id() -> str:
    """A fresh job id (32 hex digits, as ActiveJob's UUIDs without dashes)."""
    return uuid.uuid4().hex


class Waits(Protocol):
    """What a ref asks of its :class:`~pyresqueworker.Client`."""

    def result(self, job_id: str, timeout: Optional[float] = None) -> Any: ...

    def status(self, job_id: str) -> str: ...


class AsyncWaits(Protocol):
    """What a ref asks of its :class:`~pyresqueworker.AsyncClient`."""

    async def result(self, job_id: str, timeout: Optional[float] = None) -> Any: ...

    async def status(self, job_id: str) -> str: ...


class JobRef(str):
    """A job's id, and a handle on its result and state (see the module)."""

    def __new__(cls, job_id: str, client: Union[Waits, AsyncWaits, None] = None,
                tracked: bool = False, scheduled_for: Optional[int] = None) -> JobRef:
        return super().__new__(cls, job_id)

    def __init__(self, job_id: str, client: Union[Waits, AsyncWaits, None] = None,
                 tracked: bool = False, scheduled_for: Optional[int] = None) -> None:
        super().__init__()
        self.tracked = tracked
        self.scheduled_for = scheduled_for  # enqueue_at/_in: the time it was filed under
        self._waits: Optional[Waits] = None
        self._async_waits: Optional[AsyncWaits] = None
        if _is_async(client):
            self._async_waits = client  # type: ignore[assignment]
        elif client is not None:
            self._waits = client  # type: ignore[assignment]

    @property
    def id(self) -> str:
        """The job's id, as a plain ``str``."""
        return str.__str__(self)

    def result(self, timeout: Optional[float] = None) -> Any:
        """Wait for the job's end and return its result (None when it keeps none).

        Blocks on Redis, up to ``timeout`` seconds (None: for ever). Raises
        :class:`~pyresqueworker.JobFailed` if it failed for good or was canceled,
        ``TimeoutError`` when the time is up, ``LookupError`` for a job that is not tracked."""
        return self._sync().result(self.id, timeout=timeout)

    async def aresult(self, timeout: Optional[float] = None) -> Any:
        """:meth:`result` for asyncio code."""
        if self._async_waits is not None:
            return await self._async_waits.result(self.id, timeout=timeout)
        waits = self._sync()
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: waits.result(self.id, timeout=timeout))

    def status(self) -> str:
        """``queued``, ``scheduled`` (delayed, or waiting for its dependencies), ``running``,
        ``succeeded``, ``failed``, ``retrying``, ``canceled`` or ``unknown``."""
        return self._sync().status(self.id)

    async def astatus(self) -> str:
        """:meth:`status` for asyncio code."""
        if self._async_waits is not None:
            return await self._async_waits.status(self.id)
        return await asyncio.get_running_loop().run_in_executor(None, self.status)

    def _sync(self) -> Waits:
        if self._waits is not None:
            return self._waits
        if self._async_waits is not None:
            raise TypeError("this JobRef came from an AsyncClient: await ref.aresult() or "
                            "ref.astatus()")
        raise TypeError("this JobRef has no client (it was unpickled, or made by hand): "
                        "ask one, client.result(ref) or client.status(ref)")

    def __reduce__(self) -> Any:  # (pickled as the id: a client does not travel)
        return (JobRef, (self.id, None, self.tracked, self.scheduled_for))


def _is_async(client: Any) -> bool:
    return asyncio.iscoroutinefunction(getattr(client, "enqueue", None))
