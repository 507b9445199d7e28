"""OpenTelemetry spans around jobs, in the shape of Ruby's ``opentelemetry-instrumentation-resque``.

The gem writes the W3C trace context into the job hash itself when it pushes
(``{"class":..,"args":[..],"traceparent":"00-..-..-01"}``, ``"tracestate"`` when set) and its
worker runs each job in a consumer span named ``<queue> process`` with the attributes of
:func:`span_attributes`. Here a worker does the same for every job (thread slots, asyncio
slots, ``--fork-per-job`` children), as a child of the payload's context (``child``, the
default) or as a new trace linked to it (``link``). The producer side is
:mod:`pyresqueworker.client._trace_enqueue`.

Off and free when ``opentelemetry-api`` is not installed, when ``--tracing off``, and while no
tracer provider is configured (checked per job until one is, since an app may set it up late):
each job then costs a method call on a shared no-op span.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar

from .._version import __version__
from ..protocol.failure import exception_name
from .activejob import JOB_WRAPPER

if TYPE_CHECKING:
    from ..protocol.job import Job

try:  # the [otel] extra; without it every function here does nothing
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by installs without the extra
    otel = False
else:
    otel = True

__all__ = ["MODES", "NULL_SPAN", "JobSpan", "JobTracing", "current_context_valid",
           "job_class_of", "record_failure", "span_attributes", "tracer"]

MODES = ("child", "link", "off")
FAILED_OUTCOMES = ("failure", "timeout")
T = TypeVar("T")

_tracer: Any = None  # the package's tracer, once a provider is configured
PROVIDER_LOOK_S = 1.0  # how soon a worker notices a provider set while it runs


def tracer() -> Any:
    """The package's tracer, or None while OpenTelemetry is absent or unconfigured (the
    default proxy provider, or the no-op one). Cached once found: a provider is set once."""
    global _tracer
    if _tracer is not None or not otel:
        return _tracer
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    _tracer = provider.get_tracer("pyresqueworker", __version__)
    return _tracer


def current_context_valid() -> bool:
    """Whether a span (local or remote) is current in this thread or task."""
    return otel and trace.get_current_span().get_span_context().is_valid


def job_class_of(class_name: Any, args: Any) -> str:
    """The class the gem names in ``messaging.resque.job_class``: ActiveJob's ``job_class``
    for Rails' JobWrapper (when its first argument is a hash naming one), else the payload's
    class."""
    if class_name == JOB_WRAPPER and isinstance(args, list) and args and isinstance(args[0], dict):
        inner = args[0].get("job_class")
        if isinstance(inner, str):
            return inner
    return class_name if isinstance(class_name, str) else ""


def span_attributes(queue: str, job_class: str) -> dict[str, str]:
    """The gem's attributes, on both its producer and its consumer spans."""
    return {
        "messaging.system": "resque",
        "messaging.destination": queue,
        "messaging.destination_kind": "queue",
        "messaging.resque.job_class": job_class,
    }


def record_failure(exc: BaseException) -> None:
    """Record ``exc`` on the current span and mark it failed, as the gem does (no-op when
    no span is recording: tracing off, or a ``--fork-per-job`` parent's span in the child)."""
    if not otel:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR,
                               f"Unhandled exception of type: {exception_name(exc)}"))


class JobEnd(Protocol):
    """How a job ended, as a span closes on it (a worker's ``JobResult``): the outcome, and
    the failure entry the worker wrote."""

    @property
    def outcome(self) -> str: ...

    @property
    def finish(self) -> FinishedEntry: ...


class FinishedEntry(Protocol):
    """The completion a worker sends for a job; ``entry`` is its failure entry, if any."""

    @property
    def entry(self) -> str: ...


class JobSpan:
    """A job's consumer span; this base class is the no-op one (:data:`NULL_SPAN`).

    ``with span:`` makes it current around the job; :meth:`in_child` does that in a
    ``--fork-per-job`` child and flushes what the child exported; :meth:`end` closes it
    with the job's result.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None

    def in_child(self, perform: Callable[[Job], T], job: Job) -> T:
        """Run ``perform(job)`` in a forked child under this span."""
        return perform(job)

    def end(self, result: JobEnd, forked: bool) -> None:
        """Close the span; ``forked``: the job ran in a child, whose exception was not
        recorded here (it is recorded from the failure entry instead)."""


NULL_SPAN = JobSpan()


class _LiveSpan(JobSpan):
    def __init__(self, span: Any, active: Any) -> None:
        self.span = span
        self.active = active  # the context the job runs in: the span, the payload's baggage
        self.token: Any = None

    def __enter__(self) -> None:
        self.token = otel_context.attach(self.active)

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self.token)

    def in_child(self, perform: Callable[[Job], T], job: Job) -> T:
        try:
            with self:
                return perform(job)
        finally:
            # The child leaves with os._exit: what its processors still hold must go now
            # (the gem's force_flush for forking workers).
            flush = getattr(trace.get_tracer_provider(), "force_flush", None)
            if flush is not None:
                flush()

    def end(self, result: JobEnd, forked: bool) -> None:
        if forked and result.outcome in FAILED_OUTCOMES:
            _record_entry(self.span, result.finish.entry)
        self.span.end()


def _record_entry(span: Any, entry: str) -> None:
    """The exception event of a failure the parent only knows from its entry (a child's
    exception, a timeout kill, a dirty exit)."""
    try:
        failure = json.loads(entry)
    except ValueError:
        failure = {}
    name = str(failure.get("exception") or "RuntimeError")
    backtrace = failure.get("backtrace")
    span.add_event("exception", {
        "exception.type": name,
        "exception.message": str(failure.get("error") or ""),
        "exception.stacktrace": "\n".join(map(str, backtrace)) if isinstance(backtrace, list)
        else "",
    })
    span.set_status(Status(StatusCode.ERROR, f"Unhandled exception of type: {name}"))


if otel:
    class _PayloadGetter(Getter[Mapping[str, Any]]):
        """Reads propagation fields from a job hash: strings only (hostile payloads carry
        anything)."""

        def get(self, carrier: Mapping[str, Any], key: str) -> Optional[list[str]]:
            value = carrier.get(key)
            return [value] if isinstance(value, str) else None

        def keys(self, carrier: Mapping[str, Any]) -> list[str]:
            return [key for key in carrier if isinstance(key, str)]

    _GETTER = _PayloadGetter()


class JobTracing:
    """A worker's tracing settings: ``mode`` is ``child``, ``link`` or ``off``;
    ``trace_worker_redis`` lets Redis instrumentation trace the worker's own calls."""

    def __init__(self, mode: str = "child", trace_worker_redis: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"tracing must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode if otel else "off"
        self.trace_worker_redis = trace_worker_redis
        self._unconfigured_until = 0.0  # (monotonic) see start

    def start(self, job: Job) -> JobSpan:
        """The job's consumer span (started, not yet current), or :data:`NULL_SPAN`."""
        if self.mode == "off":
            return NULL_SPAN
        found = _tracer
        if found is None:
            # OpenTelemetry's look for a provider reads the environment (~1 µs, a few % of a
            # short job): while none is configured, a worker looks again a second later.
            now = time.monotonic()
            if now < self._unconfigured_until:
                return NULL_SPAN
            found = tracer()
            if found is None:
                self._unconfigured_until = now + PROVIDER_LOOK_S
                return NULL_SPAN
        payload = job.payload if job.payload is not None else {}
        attributes = span_attributes(job.queue, job_class_of(payload.get("class"),
                                                             payload.get("args")))
        name = f"{job.queue} process"
        # From an empty context: the slot's own (instrumentation suppressed) must not leak in.
        extracted = propagate.extract(payload, context=otel_context.Context(), getter=_GETTER)
        if self.mode == "child":
            span = found.start_span(name, context=extracted, kind=SpanKind.CONSUMER,
                                    attributes=attributes)
        else:
            remote = trace.get_current_span(extracted).get_span_context()
            span = found.start_span(
                name, context=trace.set_span_in_context(trace.INVALID_SPAN, extracted),
                kind=SpanKind.CONSUMER, attributes=attributes,
                links=[Link(remote)] if remote.is_valid else None)
        return _LiveSpan(span, trace.set_span_in_context(span, extracted))

    def quietly(self, function: Callable[[], None]) -> Callable[[], None]:
        """``function`` run within :meth:`worker_calls` (a thread's target: threads do not
        inherit the context of the thread that starts them)."""
        def run() -> None:
            with self.worker_calls():
                function()
        return run

    @contextmanager
    def worker_calls(self) -> Iterator[None]:
        """Around a slot's loop: its own Redis calls (claims, completions, retries) are not
        traced by Redis instrumentation, unless ``trace_worker_redis``. Jobs run in their
        own context, where the handler's calls are traced as usual."""
        if self.mode == "off" or self.trace_worker_redis:
            yield
            return
        quiet = otel_context.set_value("suppress_instrumentation", True)
        key = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
        if key is not None:  # the key instrumentations check besides the plain name
            quiet = otel_context.set_value(key, True, quiet)
        token = otel_context.attach(quiet)
        try:
            yield
        finally:
            otel_context.detach(token)
