"""Job handlers by Resque class name, with Ruby Resque's hook semantics (spec §3, §13, §14).

A :class:`Registry` maps the ``class`` of a payload (``Archive``, ``Jobs::Archive``) to a Python
function, ``async`` function or class. It decodes a claimed :class:`~pyresqueworker.Job`
into a :class:`~pyresqueworker.JobCall` and performs it: middleware, then the class's
``before_perform*`` / ``around_perform*`` / ``after_perform*`` / ``on_failure*`` hooks, then the
handler. Everything reflective happens at registration, so the per-job path is a dict lookup,
a few ``getattr`` calls and the call itself.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, cast, overload

from ..protocol.job import Job, JobCall
from .activejob import JOB_WRAPPER, decode_active_job
from .decoding import resque_decode
from .errors import PayloadError, UnknownJobClass
from .handles import JobDecorator, JobHandle, P, Performer, R, body_of, handle_of, name_of
from .hooks import (
    DontPerform,
    Handler,
    HookRun,
    RunAsync,
    build_handler,
    current_job,
    run_failure_hooks,
    running_job,
)
from .observers import JobObserver
from .retry import Retry

if TYPE_CHECKING:  # periodic imports croniter: loaded only when schedules are used
    from .schedules import Schedule

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
    "observe",
]


T = TypeVar("T")
Decoder = Callable[[Job], JobCall]
Middleware = Callable[[Job, JobCall, Callable[[], Any]], Any]

class Registry:
    """Handlers by Resque class name, decoders, and middleware."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._decoders: dict[str, Decoder] = {JOB_WRAPPER: decode_active_job}
        self._global_decoder: Optional[Decoder] = None
        self._middleware: tuple[Middleware, ...] = ()
        self.observers: tuple[JobObserver, ...] = ()  # in the order added
        self._periodic: dict[str, Schedule] = {}  # registry.periodic(), by name

    # -- registration -------------------------------------------------------------------

    @overload
    def job(
        self,
        class_name: Optional[str] = None,
        *,
        queue: Optional[str] = None,
        timeout: Optional[float] = None,
        decoder: Optional[Decoder] = None,
        retry: Optional[Retry] = None,
        max_concurrency: Optional[int] = None,
        cron: Optional[str] = None,
        result_ttl: Optional[int] = None,
    ) -> JobDecorator: ...

    @overload
    def job(self, class_name: type[T]) -> type[T]: ...  # type: ignore[overload-overlap]

    @overload
    def job(self, class_name: Callable[P, R]) -> JobHandle[P, R]: ...

    def job(
        self,
        class_name: Any = None,
        *,
        queue: Optional[str] = None,
        timeout: Optional[float] = None,
        decoder: Optional[Decoder] = None,
        retry: Optional[Retry] = None,
        max_concurrency: Optional[int] = None,
        cron: Optional[str] = None,
        result_ttl: Optional[int] = None,
    ) -> Any:
        """Decorator registering a function, ``async`` function or class; a function comes
        back as its typed :class:`~pyresqueworker.jobs.handles.JobHandle`, a class unchanged.

        ``class_name`` is the Resque class name (default: the target's ``__name__``). Also
        usable bare, as ``@registry.job``. ``retry`` retries failures with backoff (see
        :class:`~pyresqueworker.jobs.retry.Retry`); ``max_concurrency`` caps how many jobs of this
        class run at once across all workers; ``cron`` also enqueues the job periodically
        (standard five-field cron syntax, with no arguments, to ``queue``); ``result_ttl``
        keeps each job's return value that many seconds (see ``JobRef.result``).
        """
        if class_name is not None and not isinstance(class_name, str):
            return self._decorated(class_name, None)

        def decorate(target: Any) -> Any:
            return self._decorated(target, class_name, queue=queue, timeout=timeout,
                                   decoder=decoder, retry=retry,
                                   max_concurrency=max_concurrency, cron=cron,
                                   result_ttl=result_ttl)

        return cast(JobDecorator, decorate)

    def _decorated(self, target: Any, class_name: Optional[str], **options: Any) -> Any:
        """Register ``target``; the class itself, or a function's handle."""
        handler = self.register(class_name or name_of(target), target, **options)
        return handler.target if inspect.isclass(handler.target) else handle_of(handler)

    def handle_for(self, target: type[Performer[P, R]]) -> JobHandle[P, R]:
        """The typed handle of a registered job class (a function too), with its registered
        name and queue: ``mail = registry.handle_for(Mail)``; ``mail.enqueue(...)`` is then
        checked against ``Mail.perform``. ``LookupError`` if it is not registered here."""
        body = body_of(target)
        for handler in self._handlers.values():
            if handler.target is body:
                return cast("JobHandle[P, R]", handle_of(handler))
        raise LookupError(f"{body!r} is not registered here: decorate it with @job first")

    def register(
        self,
        class_name: str,
        target: Any,
        *,
        queue: Optional[str] = None,
        timeout: Optional[float] = None,
        decoder: Optional[Decoder] = None,
        retry: Optional[Retry] = None,
        max_concurrency: Optional[int] = None,
        cron: Optional[str] = None,
        result_ttl: Optional[int] = None,
    ) -> Handler:
        """Register ``target`` for payloads whose ``class`` is ``class_name``.

        Raises ``ValueError`` if the name is already taken by another target: two modules
        each registering a ``send_email`` by ``__name__`` is a bug worth hearing about.
        A :class:`~pyresqueworker.jobs.handles.JobHandle` registers the function it wraps.
        """
        target = body_of(target)
        handler = build_handler(class_name, target, queue, timeout)
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}")
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a Retry, got {type(retry).__name__}")
        if result_ttl is not None and (not isinstance(result_ttl, int) or result_ttl < 1):
            raise ValueError(f"result_ttl must be a whole number of seconds >= 1, "
                             f"got {result_ttl!r}")
        handler = replace(handler, retry=retry, max_concurrency=max_concurrency, cron=cron,
                          result_ttl=result_ttl)
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

    def observe(self, observer: JobObserver) -> JobObserver:
        """Add ``observer``: every worker using this registry tells it each job's start and
        end, after its own metrics, history and log line (see :class:`JobObserver`)."""
        self.observers = (*self.observers, observer)
        return observer

    # -- lookup -------------------------------------------------------------------------

    def handler(self, class_name: str) -> Handler:
        """The handler for ``class_name``; raises :class:`UnknownJobClass`.

        Like ``Resque.constantize``, a leading ``::`` is ignored and a dashed name is
        classified (``job-name`` -> ``JobName``).
        """
        found = self.find(class_name)
        if found is None:
            raise UnknownJobClass(class_name)
        return found

    def find(self, class_name: str) -> Optional[Handler]:
        """The handler :meth:`handler` would give for ``class_name``, or None."""
        found = self._handlers.get(class_name)
        if found is not None:
            return found
        alias = class_name[2:] if class_name.startswith("::") else class_name
        if "-" in alias:
            alias = "".join(part.capitalize() for part in alias.split("-"))
        return self._handlers.get(alias)

    def queue_for(self, class_name: str) -> Optional[str]:
        """The default queue of a registered class, or None (unknown, or no default)."""
        found = self.find(class_name)
        return found.queue if found is not None else None

    @property
    def has_middleware(self) -> bool:
        """Whether any middleware is registered (asyncio mode then runs jobs in threads)."""
        return bool(self._middleware)

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
            return resque_decode(job)
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
        run = HookRun(handler, current, run_async or asyncio.run)
        token = running_job.set(current)
        try:
            chain = self._middleware
            if chain:
                _call_chain(chain, 0, job, call, run)
            else:
                run()
        except BaseException as exc:  # Ruby's ``rescue Object``: TERM-style exits included
            run_failure_hooks(handler, run.owner, exc, call)
            raise
        finally:
            running_job.reset(token)
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
        token = running_job.set((job, call))
        try:
            run_failure_hooks(handler, None, exc, call)
        finally:
            running_job.reset(token)

    # -- periodic (cron) schedules declared in code ---------------------------------------

    def periodic(self, cron: str, class_name: str, args: Sequence[Any] = (),
                 queue: Optional[str] = None, *, name: Optional[str] = None,
                 description: str = "") -> Schedule:
        """Enqueue ``class_name(*args)`` to ``queue`` at every ``cron`` time (five-field cron).

        ``queue`` defaults to the queue the class was registered with here. ``name`` (default:
        the class name) identifies the schedule; give each schedule of one class its own.
        Workers fire it exactly once per firing however many run (see
        :mod:`pyresqueworker.worker.periodic`). Raises ``ValueError`` for a bad cron, queue or args
        and for a name already used.
        """
        from .schedules import Schedule

        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise ValueError("args must be a list of arguments")
        if queue is None:
            queue = self.queue_for(class_name)
            if queue is None:
                raise ValueError(f"no queue for the periodic {class_name!r}: pass queue=, or "
                                 "register the class with a queue first")
        schedule = Schedule(name if name is not None else class_name, cron, class_name,
                            list(args), queue, description, source="code")
        if schedule.name in self._periodic:
            raise ValueError(f"a periodic schedule named {schedule.name!r} is already declared")
        self._periodic[schedule.name] = schedule
        return schedule

    def periodic_schedules(self) -> list[Schedule]:
        """Every schedule declared in code: handlers with ``cron=`` (named by their class)
        and :meth:`periodic` ones. Raises ``ValueError`` for a ``cron=`` handler without a
        queue, a bad cron string, or two schedules with one name."""
        from .schedules import Schedule

        found: dict[str, Schedule] = {}
        for handler in self._handlers.values():
            if handler.cron is None:
                continue
            if not handler.queue:
                raise ValueError(f"job {handler.class_name!r} has cron={handler.cron!r} but no "
                                 "queue: pass queue= so its periodic runs have somewhere to go")
            try:
                found[handler.class_name] = Schedule(handler.class_name, handler.cron,
                                                     handler.class_name, [], handler.queue,
                                                     source="code")
            except ValueError as exc:
                raise ValueError(f"job {handler.class_name!r}: {exc}") from None
        for schedule in self._periodic.values():
            if schedule.name in found:
                raise ValueError(f"periodic schedule {schedule.name!r} is declared twice "
                                 "(a cron= job and registry.periodic)")
            found[schedule.name] = schedule
        return list(found.values())


def _call_chain(
    chain: tuple[Middleware, ...], index: int, job: Job, call: JobCall, run: HookRun
) -> Any:
    """Call middleware ``index``; its ``call_next`` calls the next one, the last the job."""
    if index == len(chain):
        return run()
    return chain[index](job, call, lambda: _call_chain(chain, index + 1, job, call, run))


default_registry = Registry()
job = default_registry.job
middleware = default_registry.middleware
observe = default_registry.observe
