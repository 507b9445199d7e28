"""What a job handle enqueues through, typed by the methods it calls (the client layer sits
above this one): a :class:`~pyresqueworker.Client`, an
:class:`~pyresqueworker.AsyncClient`, or a batch (:meth:`~pyresqueworker.Client.batch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Optional, Protocol, Union

from ..protocol.times import When
from .job_ref import JobRef

__all__ = ["OPTIONS", "AsyncEnqueuer", "ClientLike", "DependsOn", "Enqueuer", "Scheduler"]


DependsOn = Optional[Iterable[str]]


class Enqueuer(Protocol):
    """What a handle enqueues through: a :class:`~pyresqueworker.Client` (typed by its methods,
    so this layer does not import the client layer above it), or a batch of one."""

    def enqueue(self, class_name: str, /, *args: Any, queue: Optional[str] = None,
                result_ttl: Optional[int] = None, depends_on: DependsOn = None,
                on_dependency_failure: str = "cancel") -> JobRef: ...

    def enqueue_to(self, queue: str, class_name: str, /, *args: Any,
                   result_ttl: Optional[int] = None, depends_on: DependsOn = None,
                   on_dependency_failure: str = "cancel") -> JobRef: ...


class Scheduler(Protocol):
    """A :class:`~pyresqueworker.Client`'s delayed enqueues."""

    def enqueue_in(self, seconds: Union[float, timedelta], class_name: str, /, *args: Any,
                   queue: Optional[str] = None, result_ttl: Optional[int] = None) -> JobRef: ...

    def enqueue_at(self, when: When, class_name: str, /, *args: Any,
                   queue: Optional[str] = None, result_ttl: Optional[int] = None) -> JobRef: ...


class ClientLike(Enqueuer, Scheduler, Protocol):
    """A :class:`~pyresqueworker.Client`."""


class AsyncEnqueuer(Protocol):
    """The asyncio twin of :class:`ClientLike`: an :class:`~pyresqueworker.AsyncClient`."""

    async def enqueue(self, class_name: str, /, *args: Any, queue: Optional[str] = None,
                      result_ttl: Optional[int] = None, depends_on: DependsOn = None,
                      on_dependency_failure: str = "cancel") -> JobRef: ...

    async def enqueue_to(self, queue: str, class_name: str, /, *args: Any,
                         result_ttl: Optional[int] = None, depends_on: DependsOn = None,
                         on_dependency_failure: str = "cancel") -> JobRef: ...

    async def enqueue_in(self, seconds: Union[float, timedelta], class_name: str, /,
                         *args: Any, queue: Optional[str] = None,
                         result_ttl: Optional[int] = None) -> JobRef: ...

    async def enqueue_at(self, when: When, class_name: str, /, *args: Any,
                         queue: Optional[str] = None, result_ttl: Optional[int] = None
                         ) -> JobRef: ...


#: What a handle's enqueue may take besides the job's arguments (see JobHandle.with_options).
OPTIONS = ("batch", "result_ttl", "depends_on", "on_dependency_failure")
