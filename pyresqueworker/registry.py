"""Job handlers by Resque class name, with Ruby Resque's hook semantics (spec §3, §13, §14).

A :class:`Registry` maps the ``class`` of a payload (``Archive``, ``Jobs::Archive``) to a Python
function, ``async`` function or class. It decodes a claimed :class:`~pyresqueworker.job.Job`
into a :class:`~pyresqueworker.job.JobCall` and performs it: middleware, then the class's
``before_perform*`` / ``around_perform*`` / ``after_perform*`` / ``on_failure*`` hooks, then the
handler. Everything reflective happens at registration, so the per-job path is a dict lookup,
a few ``getattr`` calls and the call itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import types
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar, overload

from .activejob import JOB_WRAPPER, decode_active_job
from .job import Job, JobCall

__all__ = [
    "Decoder",
    "DontPerform",
    "Handler",
    "Middleware",
    "PayloadError",
    "Registry",
    "UnknownJobClass",
    "current_job",
    "default_registry",
    "job",
    "middleware",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])  # a bare ``@job``: the function or class itself
Decoder = Callable[[Job], JobCall]
Middleware = Callable[[Job, JobCall, Callable[[], Any]], Any]
RunAsync = Callable[[Coroutine[Any, Any, Any]], Any]

_HOOK_PREFIXES = ("before_perform", "around_perform", "after_perform", "on_failure")
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}

_current: contextvars.ContextVar[tuple[Job, JobCall]] = contextvars.ContextVar("pyresque_job")


class DontPerform(Exception):
    """Raise from a ``before_perform`` hook to skip the job quietly (no failure is written).

    As in Ruby Resque, only ``before_perform`` hooks may skip a job this way; raised anywhere
    else it is an ordinary failure. Middleware skips a job by not calling ``call_next``.
    """


class UnknownJobClass(LookupError):
    """No handler is registered for the payload's class (Ruby raises ``NameError``)."""

    resque_name = "NameError"

    def __init__(self, class_name: str) -> None:
        self.class_name = class_name
        super().__init__(
            f"uninitialized constant {class_name} "
            f"(no Python handler is registered for {class_name!r})"
        )


class PayloadError(ValueError):
    """The payload does not have the shape of a Resque job (not an object, no class, ...)."""

    resque_name = "Resque::Helpers::DecodeException"


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    name = _JSON_TYPES.get(type(value))
    if name is None:
        name = "number" if isinstance(value, (int, float)) else type(value).__name__
    return name


def current_job() -> tuple[Job, JobCall]:
    """The job being performed in this thread or task, and its decoded call.

    Raises :class:`LookupError` outside a job.
    """
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_job() called outside a job") from None


async def _in_job_context(coro: Coroutine[Any, Any, Any], current: tuple[Job, JobCall]) -> Any:
    # run_async may start the coroutine in a context that is not ours (a fresh thread starts
    # with an empty one), so set the job again inside the task.
    _current.set(current)
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

    def owner(self) -> Any:
        """What hooks and ``perform`` are looked up on: the class, or a fresh instance."""
        return self.target() if self.instantiate else self.target


def _plain_function(raw: Any) -> tuple[Any, bool]:
    """(underlying function, needs an instance) for a class attribute found statically."""
    if isinstance(raw, (staticmethod, classmethod)):
        return raw.__func__, False
    return raw, inspect.isfunction(raw)


def _build_handler(
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
    groups: dict[str, list[str]] = {prefix: [] for prefix in _HOOK_PREFIXES}
    for name in sorted(dir(target)):  # plain string order: the bare name first (spec §13)
        prefix = next((p for p in _HOOK_PREFIXES if name.startswith(p)), None)
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
    before, around, after, failure = (tuple(groups[prefix]) for prefix in _HOOK_PREFIXES)
    return Handler(class_name, target, queue, inspect.iscoroutinefunction(perform_fn), timeout,
                   is_class=True, instantiate=instantiate, before_hooks=before,
                   around_hooks=around, after_hooks=after, failure_hooks=failure)


class _Run:
    """One job's trip through the hooks; remembers whether ``perform`` returned."""

    __slots__ = ("call", "current", "handler", "owner", "performed", "result", "run_async")

    def __init__(self, handler: Handler, current: tuple[Job, JobCall], run_async: RunAsync) -> None:
        self.handler, self.current, self.run_async = handler, current, run_async
        self.call = current[1]
        self.owner: Any = None
        self.performed = False
        self.result: Any = None

    def __call__(self) -> Any:
        handler, args, kwargs = self.handler, self.call.args, self.call.kwargs
        owner = self.owner = handler.owner()
        try:
            for name in handler.before_hooks:
                getattr(owner, name)(*args, **kwargs)
        except DontPerform:
            return None
        if handler.around_hooks:
            self._around(owner)
        else:
            self._invoke(owner)
        # Ruby runs after hooks even when an around hook did not yield (job.rb ``perform``).
        for name in handler.after_hooks:
            getattr(owner, name)(*args, **kwargs)
        return self.result

    def _invoke(self, owner: Any) -> None:
        fn = owner.perform if self.handler.is_class else owner
        result = fn(*self.call.args, **self.call.kwargs)
        if self.handler.is_async or isinstance(result, types.CoroutineType):
            result = self.run_async(_in_job_context(result, self.current))
        self.result = result
        self.performed = True

    def _around(self, owner: Any) -> None:
        """Nest the around hooks like ``contextlib.ExitStack``: the first one is outermost."""
        args, kwargs = self.call.args, self.call.kwargs
        entered: list[tuple[str, Generator[Any, None, Any]]] = []
        error: Optional[BaseException] = None
        try:
            for name in self.handler.around_hooks:
                gen = getattr(owner, name)(*args, **kwargs)
                try:
                    next(gen)
                except StopIteration:
                    break  # did not yield: neither the inner hooks nor perform run
                entered.append((name, gen))
            else:
                self._invoke(owner)
        except BaseException as exc:
            error = exc
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


class Registry:
    """Handlers by Resque class name, decoders, and middleware."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._decoders: dict[str, Decoder] = {JOB_WRAPPER: decode_active_job}
        self._global_decoder: Optional[Decoder] = None
        self._middleware: tuple[Middleware, ...] = ()

    # -- registration -------------------------------------------------------------------

    @overload
    def job(
        self,
        class_name: Optional[str] = None,
        *,
        queue: Optional[str] = None,
        timeout: Optional[float] = None,
        decoder: Optional[Decoder] = None,
    ) -> Callable[[T], T]: ...

    @overload
    def job(self, class_name: F) -> F: ...

    def job(
        self,
        class_name: Any = None,
        *,
        queue: Optional[str] = None,
        timeout: Optional[float] = None,
        decoder: Optional[Decoder] = None,
    ) -> Any:
        """Decorator registering a function, ``async`` function or class; returns it unchanged.

        ``class_name`` is the Resque class name (default: the target's ``__name__``). Also
        usable bare, as ``@registry.job``.
        """
        if class_name is not None and not isinstance(class_name, str):
            self.register(class_name.__name__, class_name)
            return class_name

        def decorate(target: T) -> T:
            name = class_name if class_name is not None else getattr(target, "__name__", "")
            self.register(name, target, queue=queue, timeout=timeout, decoder=decoder)
            return target

        return decorate

    def register(
        self,
        class_name: str,
        target: Any,
        *,
        queue: Optional[str] = None,
        timeout: Optional[float] = None,
        decoder: Optional[Decoder] = None,
    ) -> Handler:
        """Register ``target`` for payloads whose ``class`` is ``class_name``.

        Raises ``ValueError`` if the name is already taken by another target: two modules
        each registering a ``send_email`` by ``__name__`` is a bug worth hearing about.
        """
        handler = _build_handler(class_name, target, queue, timeout)
        existing = self._handlers.get(class_name)
        if existing is not None and existing.target is not target:
            raise ValueError(f"{class_name!r} is already registered to {existing.target!r}")
        self._handlers[class_name] = handler
        if decoder is not None:
            self.add_decoder(decoder, class_name=class_name)
        return handler

    def add_decoder(self, decoder: Decoder, *, class_name: Optional[str] = None) -> None:
        """Use ``decoder`` for payloads of ``class_name``, or for all others if it is None.

        The last decoder added for a name wins (so the built-in ActiveJob one can be replaced).
        """
        if class_name is None:
            self._global_decoder = decoder
        else:
            self._decoders[class_name] = decoder

    def middleware(self, fn: Middleware) -> Middleware:
        """Decorator adding ``fn(job, call, call_next)``; the first added is the outermost."""
        self._middleware = (*self._middleware, fn)
        return fn

    # -- lookup -------------------------------------------------------------------------

    def handler(self, class_name: str) -> Handler:
        """The handler for ``class_name``; raises :class:`UnknownJobClass`.

        Like ``Resque.constantize``, a leading ``::`` is ignored and a dashed name is
        classified (``job-name`` -> ``JobName``).
        """
        found = self._handlers.get(class_name)
        if found is not None:
            return found
        alias = class_name[2:] if class_name.startswith("::") else class_name
        if "-" in alias:
            alias = "".join(part.capitalize() for part in alias.split("-"))
        found = self._handlers.get(alias)
        if found is None:
            raise UnknownJobClass(class_name)
        return found

    def queue_for(self, class_name: str) -> Optional[str]:
        """The default queue of a registered class, or None (unknown, or no default)."""
        found = self._handlers.get(class_name)
        return found.queue if found is not None else None

    def __contains__(self, class_name: object) -> bool:
        return class_name in self._handlers

    def handlers(self) -> list[Handler]:
        """Every registered handler, in registration order."""
        return list(self._handlers.values())

    # -- decoding -----------------------------------------------------------------------

    def decode(self, job: Job) -> JobCall:
        """Turn a claimed job into a call; raises :class:`PayloadError` for a bad payload."""
        payload = job.payload
        decoder = None
        if isinstance(payload, dict) and isinstance(payload.get("class"), str):
            decoder = self._decoders.get(payload["class"])
        if decoder is None:
            decoder = self._global_decoder
        if decoder is None:
            return _default_decode(job)
        name = getattr(decoder, "__qualname__", None) or repr(decoder)
        try:
            call = decoder(job)
        except (PayloadError, UnknownJobClass):
            raise
        except Exception as exc:
            raise PayloadError(f"decoder {name} failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(call, JobCall):
            raise PayloadError(f"decoder {name} returned {type(call).__name__}, not a JobCall")
        return call

    # -- performing ---------------------------------------------------------------------

    def perform(self, job: Job, call: JobCall, *, run_async: Optional[RunAsync] = None) -> bool:
        """Run middleware, hooks and the handler; False if the job was skipped.

        An ``async`` handler's coroutine goes to ``run_async`` (default ``asyncio.run``).
        Any exception runs the ``on_failure`` hooks and is then re-raised.
        """
        return self.perform_call(job, call, run_async=run_async)[0]

    def perform_call(self, job: Job, call: JobCall, *,
                     run_async: Optional[RunAsync] = None) -> tuple[bool, Any]:
        """As :meth:`perform`, returning ``(performed, handler's return value)``."""
        handler = self.handler(call.class_name)
        current = (job, call)
        run = _Run(handler, current, run_async or asyncio.run)
        token = _current.set(current)
        try:
            chain = self._middleware
            if chain:
                _call_chain(chain, 0, job, call, run)
            else:
                run()
        except BaseException as exc:  # Ruby's ``rescue Object``: TERM-style exits included
            _run_failure_hooks(handler, run.owner, exc, call)
            raise
        finally:
            _current.reset(token)
        return run.performed, run.result

    def run_failure_hooks(self, job: Job, exc: BaseException) -> None:
        """Run ``on_failure`` hooks for a job that died outside :meth:`perform` (dirty exits).

        Skipped, as in Ruby, when the payload cannot be decoded or its class is unknown.
        """
        try:
            call = self.decode(job)
            handler = self.handler(call.class_name)
        except (PayloadError, UnknownJobClass):
            return
        token = _current.set((job, call))
        try:
            _run_failure_hooks(handler, None, exc, call)
        finally:
            _current.reset(token)


def _call_chain(
    chain: tuple[Middleware, ...], index: int, job: Job, call: JobCall, run: _Run
) -> Any:
    """Call middleware ``index``; its ``call_next`` calls the next one, the last the job."""
    if index == len(chain):
        return run()
    return chain[index](job, call, lambda: _call_chain(chain, index + 1, job, call, run))


def _run_failure_hooks(handler: Handler, owner: Any, exc: BaseException, call: JobCall) -> None:
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


def _default_decode(job: Job) -> JobCall:
    """Resque's own reading of a payload: ``class`` names the job, ``args || []`` (spec §3)."""
    payload = job.payload
    if payload is None:
        raise PayloadError(job.decode_error or "the payload could not be decoded")
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be a JSON object, got {_json_type(payload)}")
    name = payload.get("class")
    if not isinstance(name, str) or not name:
        raise PayloadError(
            f'payload "class" must be a non-empty string, got {_json_type(name)}'
            if "class" in payload
            else 'payload has no "class"'
        )
    args = payload.get("args")
    if args is None:
        return JobCall(name)
    if not isinstance(args, list):
        raise PayloadError(f"args must be a JSON array, got {_json_type(args)}")
    # A copy, so a handler that mutates its arguments cannot change the failure entry.
    return JobCall(name, list(args))


default_registry = Registry()
job = default_registry.job
middleware = default_registry.middleware
