"""Resque's class hooks on Python job classes (spec §13), and the context of the running job.

Everything reflective happens once, when a handler is registered (:func:`build_handler`); a
job's trip through ``before_perform*`` / ``around_perform*`` / ``after_perform*`` hooks and the
handler (:class:`HookRun`) is then a few ``getattr`` calls and the calls themselves.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import types
from collections.abc import Awaitable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..protocol.job import Job, JobCall
from .retry import Retry

__all__ = [
    "HOOK_PREFIXES",
    "DontPerform",
    "Handler",
    "HookRun",
    "HookTrip",
    "RunAsync",
    "adrive_hooks",
    "build_handler",
    "current_job",
    "drive_hooks",
    "hook_trip",
    "run_failure_hooks",
]

_log = logging.getLogger("pyresqueworker.registry")

RunAsync = Callable[[Coroutine[Any, Any, Any]], Any]
HOOK_PREFIXES = ("before_perform", "around_perform", "after_perform", "on_failure")

# The job the current thread (or task) is running, for current_job().
running_job: contextvars.ContextVar[tuple[Job, JobCall]] = contextvars.ContextVar("pyresque_job")


class DontPerform(Exception):
    """Raise from a ``before_perform`` hook to skip the job quietly (no failure is written).

    As in Ruby Resque, only ``before_perform`` hooks may skip a job this way; raised anywhere
    else it is an ordinary failure. Middleware skips a job by not calling ``call_next``.
    """


def current_job() -> tuple[Job, JobCall]:
    """The job being performed in this thread or task, and its decoded call.

    Raises :class:`LookupError` outside a job.
    """
    try:
        return running_job.get()
    except LookupError:
        raise LookupError("current_job() called outside a job") from None


async def _awaited(awaitable: Any) -> Any:
    """Any awaitable (a coroutine, a Future, a Task) as a coroutine for ``run_async``."""
    return await awaitable


async def _in_job_context(coro: Coroutine[Any, Any, Any], current: tuple[Job, JobCall]) -> Any:
    # run_async may start the coroutine in a context that is not ours (a fresh thread starts
    # with an empty one), so set the job again inside the task.
    running_job.set(current)
    return await coro


@dataclass(frozen=True)
class Handler:
    """A registered handler. The hook tuples hold attribute names, sorted as Ruby sorts them.

    ``timeout`` is advisory here: the worker enforces it.
    """

    class_name: str
    target: Any
    queue: Optional[str] = None
    is_async: bool = False
    timeout: Optional[float] = None
    is_class: bool = False
    instantiate: bool = False  # a class whose perform or hooks are instance methods
    before_hooks: tuple[str, ...] = ()
    around_hooks: tuple[str, ...] = ()
    after_hooks: tuple[str, ...] = ()
    failure_hooks: tuple[str, ...] = ()
    retry: Optional[Retry] = None
    max_concurrency: Optional[int] = None  # across all workers, enforced by the claim script
    cron: Optional[str] = None  # also enqueued periodically (see pyresqueworker.worker.periodic)
    result_ttl: Optional[int] = None  # seconds its jobs' return values are kept

    def owner(self) -> Any:
        """What hooks and ``perform`` are looked up on: the class, or a fresh instance."""
        return self.target() if self.instantiate else self.target


def _plain_function(raw: Any) -> tuple[Any, bool]:
    """(underlying function, needs an instance) for a class attribute found statically."""
    if isinstance(raw, (staticmethod, classmethod)):
        return raw.__func__, False
    return raw, inspect.isfunction(raw)


def build_handler(
    class_name: str, target: Any, queue: Optional[str], timeout: Optional[float]
) -> Handler:
    if not isinstance(class_name, str) or not class_name:
        raise ValueError("a job class name must be a non-empty string")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not inspect.isclass(target):
        if not callable(target):
            raise TypeError(f"handler for {class_name!r} is not callable: {target!r}")
        is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - async callable objects
        )
        return Handler(class_name, target, queue, is_async, timeout)

    perform_fn, instantiate = _plain_function(inspect.getattr_static(target, "perform", None))
    if not callable(perform_fn):
        raise TypeError(f"job class {target.__qualname__} has no callable 'perform'")
    groups: dict[str, list[str]] = {prefix: [] for prefix in HOOK_PREFIXES}
    for name in sorted(dir(target)):  # plain string order: the bare name first (spec §13)
        prefix = next((p for p in HOOK_PREFIXES if name.startswith(p)), None)
        if prefix is None or not callable(getattr(target, name)):
            continue
        fn, needs_instance = _plain_function(inspect.getattr_static(target, name))
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"hook {target.__qualname__}.{name} must not be async")
        if prefix == "around_perform" and not inspect.isgeneratorfunction(fn):
            raise TypeError(
                f"hook {target.__qualname__}.{name} must be a generator function that yields once"
            )
        instantiate = instantiate or needs_instance
        groups[prefix].append(name)
    if instantiate:
        try:
            inspect.signature(target).bind()
        except TypeError:
            raise TypeError(
                f"job class {target.__qualname__} has instance methods, so it must be "
                "constructible with no arguments"
            ) from None
        except ValueError:  # no signature to check (some builtins): find out per job
            pass
    class_queue, class_timeout = getattr(target, "queue", None), getattr(target, "timeout", None)
    if queue is None and isinstance(class_queue, str):
        queue = class_queue
    if timeout is None and isinstance(class_timeout, (int, float)):
        timeout = float(class_timeout)
    before, around, after, failure = (tuple(groups[prefix]) for prefix in HOOK_PREFIXES)
    return Handler(class_name, target, queue, inspect.iscoroutinefunction(perform_fn), timeout,
                   is_class=True, instantiate=instantiate, before_hooks=before,
                   around_hooks=around, after_hooks=after, failure_hooks=failure)


HookTrip = Generator[Any, None, bool]


def hook_trip(handler: Handler, owner: Any, call: JobCall) -> HookTrip:
    """Resque's hook order for one job, written once for every way of running it (spec §13).

    A generator with no I/O of its own: it runs the class's ``before_perform*`` hooks on
    ``owner`` (the class, or the fresh instance :meth:`Handler.owner` made), enters the
    ``around_perform*`` hooks outermost first, then yields ``owner`` at the point where
    ``perform`` must run. Its driver runs the handler there (called, awaited...) and resumes
    the trip, or throws the handler's exception into it. The trip then leaves the around hooks
    innermost first (a hook may swallow the error, as a with-block may), runs the
    ``after_perform*`` hooks even when an around hook did not yield (Ruby's job.rb does), and
    returns whether ``perform`` ran. A ``before_perform`` hook raising :class:`DontPerform`
    skips the job (nothing is yielded). ``on_failure*`` hooks are the caller's: they get the
    error that escapes everything around the job, middleware included.
    :func:`drive_hooks` and :func:`adrive_hooks` are its drivers.
    """
    args, kwargs = call.args, call.kwargs
    try:
        for name in handler.before_hooks:
            getattr(owner, name)(*args, **kwargs)
    except DontPerform:
        return False
    performed = False
    if handler.around_hooks:
        entered: list[tuple[str, Generator[Any, None, Any]]] = []
        error: Optional[BaseException] = None
        try:
            if _enter_around(handler, owner, call, entered):
                yield owner
                performed = True
        except BaseException as exc:
            error = exc
        _leave_around(entered, error)
    else:
        yield owner
        performed = True
    for name in handler.after_hooks:
        getattr(owner, name)(*args, **kwargs)
    return performed


def drive_hooks(trip: HookTrip, perform: Callable[[Any], None]) -> bool:
    """Run a :func:`hook_trip` with ``perform(owner)`` called at its yield, in this thread."""
    begun, owner = _begin(trip)
    if not begun:
        return bool(owner)
    try:
        perform(owner)
    except BaseException as exc:
        return _end(trip, exc)
    return _end(trip, None)


async def adrive_hooks(trip: HookTrip, perform: Callable[[Any], Awaitable[Any]]
                       ) -> tuple[bool, Any]:
    """:func:`drive_hooks` with ``perform(owner)`` awaited in this task; also returns what
    it returned (None when skipped)."""
    begun, owner = _begin(trip)
    if not begun:
        return bool(owner), None
    try:
        value = await perform(owner)
    except BaseException as exc:
        return _end(trip, exc), None
    return _end(trip, None), value


def _begin(trip: HookTrip) -> tuple[bool, Any]:
    """(True, the owner to perform on), or (False, whether perform ran: a skip)."""
    try:
        return True, next(trip)
    except StopIteration as skipped:
        return False, skipped.value


def _end(trip: HookTrip, error: Optional[BaseException]) -> bool:
    try:
        if error is None:
            trip.send(None)
        else:
            trip.throw(error)
    except StopIteration as done:
        return bool(done.value)
    raise RuntimeError("a hook trip yielded twice")  # (hook_trip yields once)


class HookRun:
    """One job's trip through the hooks, in this thread; remembers what ``perform`` returned."""

    __slots__ = ("call", "current", "handler", "owner", "performed", "result", "run_async")

    def __init__(self, handler: Handler, current: tuple[Job, JobCall], run_async: RunAsync) -> None:
        self.handler, self.current, self.run_async = handler, current, run_async
        self.call = current[1]
        self.performed = False
        self.result: Any = None
        self.owner: Any = None  # for the on_failure hooks

    def __call__(self) -> Any:
        handler = self.handler
        owner = self.owner = handler.owner()
        if handler.before_hooks or handler.around_hooks or handler.after_hooks:
            self.performed = drive_hooks(hook_trip(handler, owner, self.call), self._invoke)
        else:  # (most handlers: the trip would only hand over the owner; spared per job)
            self._invoke(owner)
            self.performed = True
        return self.result

    def _invoke(self, owner: Any) -> None:
        fn = owner.perform if self.handler.is_class else owner
        result = fn(*self.call.args, **self.call.kwargs)
        if isinstance(result, (types.GeneratorType, types.AsyncGeneratorType)):
            # Calling a generator function runs none of its body: "success" would be a lie.
            raise TypeError(
                f"handler {self.handler.class_name!r} returned a generator, so its body never "
                "ran; a job handler must do its work when called (drop the 'yield')")
        if self.handler.is_async or (result is not None and inspect.isawaitable(result)):
            # An async handler, or a sync one handing back a coroutine: run it to its end.
            result = self.run_async(_in_job_context(_awaited(result), self.current))
        self.result = result


def _enter_around(handler: Handler, owner: Any, call: JobCall,
                  entered: list[tuple[str, Generator[Any, None, Any]]]) -> bool:
    """Run each around hook to its ``yield``, outermost first, adding it to ``entered``;
    False if one did not yield (then neither the inner hooks nor perform run)."""
    for name in handler.around_hooks:
        gen = getattr(owner, name)(*call.args, **call.kwargs)
        try:
            next(gen)
        except StopIteration:
            return False
        entered.append((name, gen))
    return True


def _leave_around(entered: list[tuple[str, Generator[Any, None, Any]]],
                  error: Optional[BaseException]) -> None:
    """Resume the entered around hooks innermost first, passing ``error`` in as a with-block
    would (a hook may swallow it); raise what is left."""
    for name, gen in reversed(entered):
        try:
            if error is None:
                next(gen)
            else:
                gen.throw(error)
        except StopIteration:
            error = None  # finished normally, or swallowed the error as a with-block may
            continue
        except BaseException as exc:
            error = exc
            continue
        error = RuntimeError(f"around hook {name} yielded more than once")
    if error is not None:
        raise error


def run_failure_hooks(handler: Handler, owner: Any, exc: BaseException, call: JobCall) -> None:
    if not handler.failure_hooks:
        return
    try:
        if owner is None:
            owner = handler.owner()
    except Exception:
        _log.exception("cannot create %s to run its on_failure hooks", handler.class_name)
        return
    for name in handler.failure_hooks:
        try:
            getattr(owner, name)(exc, *call.args, **call.kwargs)
        except Exception:  # a broken hook must not hide the job's own error
            _log.exception("on_failure hook %s.%s raised", handler.class_name, name)
