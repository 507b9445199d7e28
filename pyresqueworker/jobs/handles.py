"""Typed job handles: a ``@job`` function that can also enqueue itself.

``@job`` on a function returns a :class:`JobHandle`. Calling it calls the function;
``.enqueue(...)``, ``.enqueue_to(queue, ...)``, ``.enqueue_in(seconds, ...)`` and
``.enqueue_at(when, ...)`` (and ``aenqueue*``, their asyncio twins) push the plain Resque job
``{"class": name, "args": [...]}`` through the default client (see
:func:`pyresqueworker.configure`), or through the client given to :meth:`JobHandle.using`.
They take the function's own parameters (a ``ParamSpec``), so mypy rejects
``archive.enqueue("x")`` for ``def archive(n: int)``.

Keyword arguments: a Resque payload carries positional ``args`` only and Ruby calls
``perform(*args)``, so a keyword naming a parameter that can be passed by position is sent in
that position (a gap before it gets the parameter's default). A keyword-only or ``**kwargs``
parameter, or any keyword for a handle without a Python signature, raises ``TypeError`` at
enqueue time, rather than failing later in a worker.

A job class stays the class under ``@job`` (mypy ignores what a class decorator returns, and
subclasses, ``isinstance`` and annotations need the class); its typed handle, from its
``perform`` signature, is ``registry.handle_for(cls)`` (registered name and queue) or
``JobHandle(cls)``. A job whose only body is in Ruby gets ``JobHandle("Ruby::Class")``: the
issue called it ``Job(...)``, but :class:`pyresqueworker.Job` is the claimed job that every
middleware receives.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Optional, Protocol, TypeVar, Union, cast, overload

from ..protocol.times import When

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:  # pragma: no cover - Python 3.9
    from typing_extensions import ParamSpec

from ._enqueuers import (
    OPTIONS,
    AsyncEnqueuer,
    ClientLike,
    DependsOn,
    Enqueuer,
    Scheduler,
)
from .job_ref import JobRef

if TYPE_CHECKING:
    from .hooks import Handler

__all__ = [
    "OPTIONS", "AsyncEnqueuer", "ClientLike", "Enqueuer", "JobDecorator", "JobHandle",
    "Performer", "Scheduler", "body_of",
    "handle_of", "name_of", "use_default_clients",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

_BY_POSITION = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Performer(Protocol[P, R_co]):
    """A job class: its ``perform`` (static, class or instance method) is the job's signature."""

    def perform(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...


# The default clients, handed over by pyresqueworker.client.defaults when it is imported
# (importing pyresqueworker does that), so this module never imports the client layer.
_default_clients: Optional[tuple[Callable[[], ClientLike], Callable[[], AsyncEnqueuer]]] = None


def use_default_clients(sync: Callable[[], ClientLike],
                        async_: Callable[[], AsyncEnqueuer]) -> None:
    """Where handles without a client of their own get one: ``sync()`` for ``enqueue*``,
    ``async_()`` for ``aenqueue*`` (see :func:`pyresqueworker.configure`)."""
    global _default_clients
    _default_clients = (sync, async_)


def _defaults() -> tuple[Callable[[], ClientLike], Callable[[], AsyncEnqueuer]]:
    if _default_clients is None:  # only if pyresqueworker.client was never imported
        raise RuntimeError("no default client: import pyresqueworker first")
    return _default_clients


class JobDecorator(Protocol):
    """What ``@job(...)`` with arguments returns: a class stays itself, a function gets a
    :class:`JobHandle`."""

    @overload
    def __call__(self, target: type[T]) -> type[T]: ...  # type: ignore[overload-overlap]

    @overload
    def __call__(self, target: Callable[P, R]) -> JobHandle[P, R]: ...


class JobHandle(Generic[P, R]):
    """A job by its Resque class name: call it to run it here, enqueue it to run in a worker.

    ``target``: a function (``async`` too), a job class with ``perform``, or a Resque class
    name whose body lives elsewhere (Ruby): ``JobHandle("Mailer::Deliver", queue="mail")``
    accepts any positional arguments (annotate it ``JobHandle[[str, int], None]`` to have
    mypy check them). ``name``: the Resque class name (default: the target's ``__name__``).
    ``queue``: where :meth:`enqueue` pushes (default: a job class's ``queue`` attribute, else
    what :meth:`Client.enqueue <pyresqueworker.client.Client.enqueue>` infers).
    """

    target: Any  #: the function or class; None for a Ruby-only handle
    name: str  #: the Resque class name
    queue: Optional[str]  #: where enqueue() pushes; None: the client infers it
    __wrapped__: Any

    @overload
    def __init__(self: JobHandle[..., None], target: str, *,
                 queue: Optional[str] = None) -> None: ...

    @overload
    def __init__(self, target: type[Performer[P, R]], *, name: Optional[str] = None,
                 queue: Optional[str] = None) -> None: ...

    @overload
    def __init__(self, target: Callable[P, R], *, name: Optional[str] = None,
                 queue: Optional[str] = None) -> None: ...

    def __init__(self, target: Any, *, name: Optional[str] = None,
                 queue: Optional[str] = None) -> None:
        self._client: Optional[ClientLike] = None
        self._async_client: Optional[AsyncEnqueuer] = None
        self._options: dict[str, Any] = {}  # see with_options
        self._call: Optional[Callable[..., R]] = None
        self._signature: Optional[inspect.Signature] = None
        if isinstance(target, str):
            if name not in (None, target):
                raise TypeError("a JobHandle made from a class name takes no other name=")
            self.target, name = None, target
            self.__name__ = self.__qualname__ = target
        elif inspect.isclass(target):
            functools.update_wrapper(self, target, updated=())  # not the class's __dict__
            self.target = target
            self._call, self._signature = _perform_of(target)
            class_queue = getattr(target, "queue", None)
            if queue is None and isinstance(class_queue, str):
                queue = class_queue
        elif callable(target):
            functools.update_wrapper(self, target)
            self.target, self._call = target, target
            self._signature = _signature(target)
            if inspect.iscoroutinefunction(target) and hasattr(inspect, "markcoroutinefunction"):
                inspect.markcoroutinefunction(self)  # Python 3.12+: still "an async function"
        else:
            raise TypeError(f"a job handle needs a function, a job class or a class name, "
                            f"got {target!r}")
        name = name if name is not None else getattr(target, "__name__", "")
        if not isinstance(name, str) or not name:
            raise ValueError("a job class name must be a non-empty string")
        self.name, self.queue = name, queue

    def __repr__(self) -> str:
        body = "Ruby-only" if self.target is None else repr(self.target)
        return f"<JobHandle {self.name!r} queue={self.queue!r} {body}>"

    def __reduce__(self) -> Union[str, tuple[Any, ...]]:
        # Pickled by reference, as functions are, when it is a module attribute (the usual
        # ``@job`` function); else rebuilt from its target, which pickles by reference.
        module = sys.modules.get(getattr(self, "__module__", ""))
        found: Any = module
        for part in getattr(self, "__qualname__", "").split("."):
            found = getattr(found, part, None)
        if found is self:
            return cast(str, self.__qualname__)
        return _rebuild, (self.target if self.target is not None else self.name, self.name,
                          self.queue)

    # -- running here ---------------------------------------------------------------------

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the job in this process: the function, or the class's ``perform`` (on a new
        instance when it is an instance method). No middleware or hooks run."""
        if self._call is None:
            raise TypeError(f"{self.name!r} has no Python body (a JobHandle made from a class "
                            "name): enqueue it instead of calling it")
        return self._call(*args, **kwargs)

    def using(self, client: Union[ClientLike, AsyncEnqueuer]) -> JobHandle[P, R]:
        """This handle enqueueing through ``client`` (a :class:`~pyresqueworker.Client`
        for the ``enqueue*`` methods, an :class:`~pyresqueworker.AsyncClient` for
        the ``aenqueue*`` ones) instead of the default one."""
        view = cast(JobHandle[P, R], object.__new__(JobHandle))
        view.__dict__.update(self.__dict__)
        # An AsyncClient's enqueue is a coroutine function; a Client's is not.
        if inspect.iscoroutinefunction(client.enqueue):
            view._client, view._async_client = None, cast(AsyncEnqueuer, client)
        else:
            view._client, view._async_client = cast(ClientLike, client), None
        return view

    def with_options(self, *, batch: Optional[Enqueuer] = None,
                     result_ttl: Optional[int] = None, depends_on: DependsOn = None,
                     on_dependency_failure: str = "cancel") -> JobHandle[P, R]:
        """This handle enqueueing with these options: ``batch`` (added to that batch, pushed
        when its block ends), ``result_ttl``, ``depends_on``, ``on_dependency_failure`` (see
        :meth:`Client.enqueue_to <pyresqueworker.client.Client.enqueue_to>`). The same names
        are taken by ``enqueue(...)`` itself, unless the job has a parameter of that name;
        through ``with_options`` mypy still checks the job's own arguments."""
        view = cast(JobHandle[P, R], object.__new__(JobHandle))
        view.__dict__.update(self.__dict__)
        given = {"batch": batch, "result_ttl": result_ttl, "depends_on": depends_on,
                 "on_dependency_failure": on_dependency_failure}
        view._options = {**self._options, **{k: v for k, v in given.items() if v is not None}}
        return view

    # -- enqueueing through a Client ------------------------------------------------------

    def enqueue(self, /, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """Push the job to its queue (see the class docs); returns its
        :class:`~pyresqueworker.JobRef`. ``batch=``, ``result_ttl=``, ``depends_on=``,
        ``on_dependency_failure=``: see :meth:`with_options`.

        Raises :class:`~pyresqueworker.NoQueueError` when it has no queue and the
        client infers none; ``TypeError`` for arguments the job's signature does not take.
        """
        options = self._split(kwargs)
        target: Enqueuer = options.pop("batch", None) or self._sync_client()
        return target.enqueue(self.name, *self.wire_args(args, kwargs), queue=self.queue,
                              **options)

    def enqueue_to(self, queue: str, /, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """Push the job to ``queue``; returns its ref."""
        options = self._split(kwargs)
        target: Enqueuer = options.pop("batch", None) or self._sync_client()
        return target.enqueue_to(queue, self.name, *self.wire_args(args, kwargs), **options)

    def enqueue_in(self, seconds: Union[float, timedelta], /, *args: P.args,
                   **kwargs: P.kwargs) -> JobRef:
        """Run the job ``seconds`` from now (resque-scheduler's format); the ref's
        ``scheduled_for`` is the timestamp it was filed under (``None``: pushed at once)."""
        ttl = self._delayed_options(kwargs)
        return self._sync_client().enqueue_in(seconds, self.name, *self.wire_args(args, kwargs),
                                              queue=self.queue, result_ttl=ttl)

    def enqueue_at(self, when: When, /, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """Run the job at ``when`` (an aware datetime or epoch seconds); returns as
        :meth:`enqueue_in` does."""
        ttl = self._delayed_options(kwargs)
        return self._sync_client().enqueue_at(when, self.name, *self.wire_args(args, kwargs),
                                              queue=self.queue, result_ttl=ttl)

    # -- the same through an AsyncClient --------------------------------------------------

    async def aenqueue(self, /, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """:meth:`enqueue` through the running loop's default ``AsyncClient``."""
        options = self._split(kwargs)
        batch: Optional[Enqueuer] = options.pop("batch", None)
        wire = self.wire_args(args, kwargs)
        if batch is not None:
            return batch.enqueue(self.name, *wire, queue=self.queue, **options)
        return await self._async().enqueue(self.name, *wire, queue=self.queue, **options)

    async def aenqueue_to(self, queue: str, /, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """:meth:`enqueue_to` through the running loop's default ``AsyncClient``."""
        options = self._split(kwargs)
        batch: Optional[Enqueuer] = options.pop("batch", None)
        wire = self.wire_args(args, kwargs)
        if batch is not None:
            return batch.enqueue_to(queue, self.name, *wire, **options)
        return await self._async().enqueue_to(queue, self.name, *wire, **options)

    async def aenqueue_in(self, seconds: Union[float, timedelta], /, *args: P.args,
                          **kwargs: P.kwargs) -> JobRef:
        """:meth:`enqueue_in` through the running loop's default ``AsyncClient``."""
        ttl = self._delayed_options(kwargs)
        return await self._async().enqueue_in(seconds, self.name, *self.wire_args(args, kwargs),
                                              queue=self.queue, result_ttl=ttl)

    async def aenqueue_at(self, when: When, /, *args: P.args, **kwargs: P.kwargs) -> JobRef:
        """:meth:`enqueue_at` through the running loop's default ``AsyncClient``."""
        ttl = self._delayed_options(kwargs)
        return await self._async().enqueue_at(when, self.name, *self.wire_args(args, kwargs),
                                              queue=self.queue, result_ttl=ttl)

    def _split(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The enqueue options (:data:`OPTIONS`) given, taken out of ``kwargs``."""
        options = {k: v for k, v in self._options.items() if v is not None}
        params = self._signature.parameters if self._signature is not None else {}
        for name in OPTIONS:
            if name in kwargs and name not in params:
                options[name] = kwargs.pop(name)
        return options

    def _delayed_options(self, kwargs: dict[str, Any]) -> Optional[int]:
        options = self._split(kwargs)
        if set(options) - {"result_ttl", "on_dependency_failure"}:
            raise TypeError("a delayed job takes result_ttl= only (no batch or dependencies)")
        ttl: Optional[int] = options.get("result_ttl")
        return ttl

    # -- helpers --------------------------------------------------------------------------

    def wire_args(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The payload's positional ``args`` for a call with ``args`` and ``kwargs`` (see the
        module docs); ``TypeError`` for a call the job's signature does not accept."""
        signature = self._signature
        if signature is None:
            if kwargs:
                raise TypeError(f"{self.name!r} has no Python signature to place keyword "
                                "arguments by; pass them by position (Resque jobs take "
                                "positional args only)")
            return args
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name!r}: {exc}") from None
        if not kwargs:
            return args
        for key in kwargs:
            param = signature.parameters.get(key)
            if param is None or param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
                raise TypeError(
                    f"{self.name!r}: keyword argument {key!r} cannot be enqueued: a Resque "
                    "payload holds positional args only (Ruby calls perform(*args)), so only "
                    "parameters that can be passed by position may be named")
        given = bound.arguments
        by_position = [p for p in signature.parameters.values() if p.kind in _BY_POSITION]
        last = max(i for i, p in enumerate(by_position) if p.name in given)
        return tuple(given.get(p.name, p.default) for p in by_position[:last + 1])

    def _sync_client(self) -> ClientLike:
        if self._client is not None:
            return self._client
        if self._async_client is not None:
            raise TypeError("this handle uses an AsyncClient: call the aenqueue* methods")
        return _defaults()[0]()

    def _async(self) -> AsyncEnqueuer:
        if self._async_client is not None:
            return self._async_client
        if self._client is not None:
            raise TypeError("this handle uses a Client: call the enqueue* methods")
        return _defaults()[1]()


def body_of(target: Any) -> Any:
    """The function or class a :class:`JobHandle` runs; anything else as it is."""
    if isinstance(target, JobHandle):
        if target.target is None:
            raise TypeError(f"{target.name!r} has no Python body to register")
        return target.target
    return target


def handle_of(handler: Handler) -> JobHandle[..., Any]:
    """The handle of a registered handler, with its class name, queue and result TTL."""
    handle = JobHandle(handler.target, name=handler.class_name, queue=handler.queue)
    if handler.result_ttl is not None:
        handle._options = {"result_ttl": handler.result_ttl}
    return handle


def name_of(target: Any) -> str:
    """The Resque class name a bare ``@job`` gives ``target``."""
    return target.name if isinstance(target, JobHandle) else getattr(target, "__name__", "")


def _rebuild(target: Any, name: str, queue: Optional[str]) -> JobHandle[..., Any]:
    return JobHandle(target, name=name, queue=queue)


def _signature(fn: Any) -> Optional[inspect.Signature]:
    """``fn``'s signature, or None when it has none to read (some builtins)."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _perform_of(cls: type) -> tuple[Callable[..., Any], Optional[inspect.Signature]]:
    """How to run a job class's ``perform`` directly, and its signature without ``self``."""
    raw = inspect.getattr_static(cls, "perform", None)
    if not callable(getattr(cls, "perform", None)):
        raise TypeError(f"job class {cls.__qualname__} has no callable 'perform'")
    if not inspect.isfunction(raw):  # a staticmethod or classmethod: called on the class
        perform: Callable[..., Any] = cls.perform  # type: ignore[attr-defined]
        return perform, _signature(perform)
    signature = _signature(raw)
    if signature is not None:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return (lambda *args, **kwargs: cls().perform(*args, **kwargs)), signature
