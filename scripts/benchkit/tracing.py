#!/usr/bin/env python3
"""The per-job cost of tracing: drain no-op jobs carrying a Rails ``traceparent`` with an
in-process worker (one thread slot) on a private ``redis-server``, tracing off, then on.

    python scripts/benchkit/tracing.py --jobs 20000 --runs 3

"off" is ``--tracing off``; "no provider" is OpenTelemetry installed with no tracer provider
configured (the default when installed); "on" is the SDK's provider with a batch processor
and an exporter that drops spans (the cost of making spans, not of shipping them). Each value
is the median of ``--runs`` drains in jobs per second and microseconds per job (noisy on a
busy machine), with the cost of the tracing code alone around one job (50,000 rounds, no
Redis). Redis runs on core 0 (``taskset``): run this script on another (``taskset -c 1``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

import redis  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from benchkit.redis_server import Pinning, redis_server  # noqa: E402
from pyresqueworker.jobs.registry import Registry  # noqa: E402
from pyresqueworker.jobs.tracing import JobTracing  # noqa: E402
from pyresqueworker.protocol import wire  # noqa: E402
from pyresqueworker.protocol.job import Job  # noqa: E402
from pyresqueworker.protocol.queues import QueueSpec  # noqa: E402
from pyresqueworker.worker._claim import Finish  # noqa: E402
from pyresqueworker.worker._process import WorkerProcess  # noqa: E402
from pyresqueworker.worker.config import WorkerConfig  # noqa: E402
from pyresqueworker.worker.isolation import JobResult  # noqa: E402

ITEM = wire.dumps({"class": "Noop", "args": [1],
                   "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})


class Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def drain(url: str, jobs: int, tracing: str) -> float:
    """Seconds one worker takes to work ``jobs`` queued items."""
    r = redis.Redis.from_url(url)
    r.flushdb()
    for start in range(0, jobs, 1000):
        r.rpush("resque:queue:q", *[ITEM] * min(1000, jobs - start))
    registry = Registry()
    registry.register("Noop", lambda value: None)
    config = WorkerConfig(queues=QueueSpec.parse("q"), redis_url=url, interval=0,
                          tracing=tracing, log_level="WARNING")
    process = WorkerProcess(config, registry)
    began = time.perf_counter()
    process.run()
    return time.perf_counter() - began


def span_cost(tracing: str, rounds: int = 50000) -> float:
    """Microseconds of the tracing code alone around one job (start, make current, end)."""
    job = Job("q", ITEM.encode(), wire.loads(ITEM))
    result = JobResult(Finish("1"), "success")
    tracer = JobTracing(tracing)
    began = time.perf_counter()
    for _ in range(rounds):
        span = tracer.start(job)
        with span:
            pass
        span.end(result, False)
    return (time.perf_counter() - began) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    # A private redis-server on a free loopback port, pinned to core 0 as in bench.py.
    with redis_server(Pinning(True)) as url:
        costs = {"off": span_cost("off"), "no provider": span_cost("child")}
        results: dict[str, list[float]] = {"off": [], "no provider": []}
        for _ in range(options.runs):  # interleaved, so drift hits both alike
            results["off"].append(drain(url, options.jobs, "off"))
            results["no provider"].append(drain(url, options.jobs, "child"))
        # A global provider cannot be unset: "on" runs last.
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
        results["on"] = [drain(url, options.jobs, "child") for _ in range(options.runs)]
        costs["on"] = span_cost("child")
        for name, runs in results.items():
            seconds = statistics.median(runs)
            print(f"{name:12} {options.jobs / seconds:9.0f} jobs/s "
                  f"{seconds / options.jobs * 1e6:7.1f} us/job; tracing code alone "
                  f"{costs[name]:6.2f} us/job")


if __name__ == "__main__":
    main()
