"""OpenTelemetry for the tracing tests: one SDK tracer provider per test process, its spans
kept in memory (the SDK's :class:`InMemorySpanExporter`) and, for ``--fork-per-job``
children whose memory the test cannot see, also written as JSON lines to a file.

Payloads "from Rails" are built in exactly the shape ``opentelemetry-instrumentation-resque``
pushes: the job hash with ``traceparent`` (and ``tracestate``) as top-level keys after
``class`` and ``args``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol import wire
from pyresqueworker.protocol.queues import QueueSpec
from pyresqueworker.worker._process import WorkerProcess
from pyresqueworker.worker.config import WorkerConfig

# A Rails request's span, as the gem's producer would have it.
RAILS_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
RAILS_SPAN_ID = "00f067aa0ba902b7"
RAILS_TRACEPARENT = f"00-{RAILS_TRACE_ID}-{RAILS_SPAN_ID}-01"


class FileExporter(SpanExporter):
    """Appends each finished span as a JSON line to ``path`` (when set): a forked child's
    spans reach the test through it."""

    path: Optional[Path] = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as out:
                for span in spans:
                    out.write(json.dumps(json.loads(span.to_json())) + "\n")
        return SpanExportResult.SUCCESS

    def read(self) -> list[dict[str, Any]]:
        assert self.path is not None
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]


MEMORY = InMemorySpanExporter()
FILES = FileExporter()
_lock = threading.Lock()
_installed: list[TracerProvider] = []


def install_provider() -> TracerProvider:
    """The process's SDK provider (set once: OpenTelemetry allows one global provider)."""
    with _lock:
        if not _installed:
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(MEMORY))
            provider.add_span_processor(SimpleSpanProcessor(FILES))
            trace.set_tracer_provider(provider)
            _installed.append(provider)
        return _installed[0]


@pytest.fixture
def sdk_spans() -> Iterator[InMemorySpanExporter]:
    """The SDK provider installed, its recorded spans cleared before and after the test."""
    install_provider()
    MEMORY.clear()
    yield MEMORY
    MEMORY.clear()
    FILES.path = None


def gem_payload(class_name: str, args: list[Any], traceparent: str = RAILS_TRACEPARENT,
                tracestate: Optional[str] = None) -> bytes:
    """A queue item as Ruby's gem pushes it: ``Resque.push`` with the context injected."""
    item: dict[str, Any] = {"class": class_name, "args": args, "traceparent": traceparent}
    if tracestate is not None:
        item["tracestate"] = tracestate
    return wire.dumps(item).encode()


def work_until_empty(redis_url: str, registry: Registry, queues: str = "q",
                     **settings: Any) -> WorkerProcess:
    """Run an in-process worker (``--interval 0``) until its queues are empty."""
    config = WorkerConfig(queues=QueueSpec.parse(queues), redis_url=redis_url, interval=0,
                          **settings)
    process = WorkerProcess(config, registry)
    assert process.run() == 0
    return process


def spans_named(name: str) -> list[ReadableSpan]:
    return [span for span in MEMORY.get_finished_spans() if span.name == name]


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")
