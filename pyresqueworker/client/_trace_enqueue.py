"""The producer side of tracing: enqueueing inside a span writes its W3C context into the job.

As Ruby's ``opentelemetry-instrumentation-resque`` does in ``Resque.push``: a producer span
named ``<queue> send`` with the gem's attributes, and the propagator's fields
(``traceparent``, ``tracestate`` when set, ``baggage`` when set) added to the job hash as
top-level keys after its own, where a Ruby worker with the gem or a Python worker
(:mod:`pyresqueworker.jobs.tracing`) continues the trace. Only when a span is current: without
one, or without OpenTelemetry, the item is byte for byte ``Resque.enqueue_to``'s.

These are operations of :mod:`pyresqueworker.client._commands`, so the blocking and the asyncio
client both inject. Delayed items (``enqueue_at`` / ``enqueue_in`` in the future) are not
touched: resque-scheduler finds them by their exact bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, TypeVar

from ..jobs import tracing
from ..protocol import wire
from ..protocol.workflow import JobSpec
from ._commands import Op
from ._enqueue_ops import enqueue_many, push
from ._workflow_ops import enqueue_op

__all__ = ["enqueue_many_traced", "produce", "produce_tracked", "push_traced"]

T = TypeVar("T")


def produce(queue: str, job_class: str, send: Callable[[Mapping[str, str]], Op[T]]) -> Op[T]:
    """Run ``send(fields)``: with the fields to add to each job, inside a producer span,
    when a span is current; with no fields otherwise."""
    if not tracing.current_context_valid():
        return (yield from send({}))
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    # No provider but a remote context current: the no-op tracer's span carries it on.
    tracer = tracing.tracer() or trace.get_tracer("pyresqueworker")
    span = tracer.start_span(f"{queue} send", kind=SpanKind.PRODUCER,
                             attributes=tracing.span_attributes(queue, job_class))
    fields: dict[str, str] = {}
    propagate.inject(fields, context=trace.set_span_in_context(span))
    # Current while the writes go out (Redis instrumentation nests under it); the drivers
    # raise a failed write inside the operation, so this detaches where it attached.
    with trace.use_span(span, end_on_exit=True, record_exception=False,
                        set_status_on_exception=False):
        try:
            return (yield from send(fields))
        except BaseException as exc:
            tracing.record_failure(exc)
            raise


def push_traced(keys: wire.Keys, queue: str, class_name: str, args: Any, item: str,
                piped: bool) -> Op[str]:
    """``Resque.push`` of ``item`` (a job of ``class_name`` with ``args``), traced as
    :func:`produce` says; returns the item as written."""
    if not tracing.current_context_valid():  # no span: the plain push, nothing built for one
        yield from push(keys, queue, item, piped)
        return item

    def send(fields: Mapping[str, str]) -> Op[str]:
        written = wire.with_fields(item, fields)
        yield from push(keys, queue, written, piped)
        return written

    return (yield from produce(queue, tracing.job_class_of(class_name, args), send))


def produce_tracked(keys: wire.Keys, queue: str, class_name: str, args: Any, item: str,
                    spec: Callable[[str, str, str], JobSpec]) -> Op[str]:
    """A tracked job's enqueue (its record, and its item on its queue unless it waits for
    dependencies; see :func:`~pyresqueworker.client._workflow_ops.enqueue_op`), traced as
    :func:`produce` says; returns its state. ``spec(queue, item, class_name)`` describes it."""
    if not tracing.current_context_valid():
        return (yield from enqueue_op(keys, spec(queue, item, class_name)))

    def send(fields: Mapping[str, str]) -> Op[str]:
        return enqueue_op(keys, spec(queue, wire.with_fields(item, fields), class_name))

    return (yield from produce(queue, tracing.job_class_of(class_name, args), send))


def enqueue_many_traced(keys: wire.Keys, queue: str, jobs: Iterable[tuple[str, Sequence[Any]]],
                        batch: int) -> Op[int]:
    """:func:`~pyresqueworker.client._enqueue_ops.enqueue_many`, traced as :func:`produce` says:
    one span for the call (named by its first job's class), its context in every job."""
    if not tracing.current_context_valid():  # no span: not even a peek at the first job
        return (yield from enqueue_many(keys, queue, jobs, batch))
    iterator = iter(jobs)
    first = next(iterator, None)
    if first is None:
        return (yield from enqueue_many(keys, queue, (), batch))
    jobs = itertools.chain([first], iterator)
    return (yield from produce(queue, tracing.job_class_of(first[0], first[1]),
                               lambda fields: enqueue_many(keys, queue, jobs, batch, fields)))
