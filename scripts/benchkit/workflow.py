"""Issue 26's workload ``workflow``: drains of jobs that keep a result, and a batch's callback.

Results: the no-op drain of ``Bench.timed`` with every job, its marks included, enqueued
exactly as ``Client.enqueue_to(queue, cls, result_ttl=600)`` writes it. Its rows are drain rows
(``ours 1 proc x 1 slot, results``) placed under the plain ones: a tracked job's end rides
ahead of its next claim, one ``EVAL`` more per job in the same round trip (docs/workflows.md,
"What it costs"). ``cmds/job`` counts the commands run inside scripts too, the finish script's
included; the top-level script calls (``EVAL`` and ``EVALSHA``) per job are ``scripts_per_job``
in the JSON (the plain
drain's too), and :func:`notes` sets each results row against its plain drain row.

Batch: ``Settings.batch_jobs`` no-op jobs (``endmax``: each keeps the latest end time in
``bench:lastend``) opened as one batch with an ``on_success`` callback to a queue no worker
watches, then drained by our worker (1 proc x 8 slots, burst). Rows: from the last member's
end to the callback being on its queue (ms: ``time.time()`` in the job, and in the bench when
its ``BLMOVE`` of the callback to another list returns; one machine's clock), the opening
call (ms), and Redis's ``used_memory`` above the empty database while the batch is pending
and once it completed (MB, the bench's opening connection closed and the worker gone).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from functools import partial
from typing import Any, Optional, cast

import redis

from benchkit import jobs as bj
from benchkit.common import BenchError, Metrics, Row, System
from benchkit.proc import Worker
from benchkit.scale import ScaleBench
from pyresqueworker import Client
from pyresqueworker.protocol import wire
from pyresqueworker.protocol.workflow import WORKFLOW_SOURCE

__all__ = ["RESULTS_SUFFIX", "RESULT_TTL", "WorkflowBench", "batch_labels", "enqueue_tracked",
           "notes"]

RESULT_TTL = 600
RESULTS_SUFFIX = ", results"  # a results row's system: the plain drain row's, then this
CALLBACK_QUEUE = "bench-callback"  # the batch's on_success goes there (no worker watches it)
_CALLBACK_KEY = wire.Keys().queue(CALLBACK_QUEUE)
CALLBACK_SEEN = "bench:callback-seen"  # ...and the watcher moves it here
_SHA = hashlib.sha1(WORKFLOW_SOURCE.encode()).hexdigest()
_MB = 1024 * 1024  # as the RSS columns (MiB)


def batch_labels(n: int) -> dict[str, str]:
    """The rows of the batch measurement besides its latency row (the system's own label)."""
    return {"open": f"batch of {n:,}: open (1 script call)",
            "pending": f"batch of {n:,}: Redis memory, pending",
            "completed": f"batch of {n:,}: Redis memory, completed"}


class _ShaPipeline:
    """Where the client's write batches go with ``pipeline=``: a redis-py pipeline, the
    workflow script's ``EVAL`` (its 10 KB source in every call, as the client must send it on
    a pipeline) queued as ``EVALSHA`` of the same script with the same keys and arguments."""

    def __init__(self, pipe: Any) -> None:
        self.pipe, self.rewritten = pipe, 0

    def execute_command(self, *args: Any) -> Any:
        if len(args) > 1 and args[0] == "EVAL" and args[1] == WORKFLOW_SOURCE:
            args, self.rewritten = ("EVALSHA", _SHA, *args[2:]), self.rewritten + 1
        return self.pipe.execute_command(*args)


def enqueue_tracked(url: str, items: list[bj.Item], result_ttl: int = RESULT_TTL,
                    chunk: int = 1000) -> None:
    """Queue ``items`` on the bench queue, each with ``Client.enqueue_to(..., result_ttl=)``.

    The client's own enqueue path (item, tracking fields, record) on a pipeline of ``chunk``
    calls, its ``EVAL`` sent as ``EVALSHA``: what Redis is asked to do is the same script call
    one by one would send, at about twice the rate (which would take seconds per run).
    """
    client = Client(url=url)
    try:
        client.redis.script_load(WORKFLOW_SOURCE)
        pipe = client.redis.pipeline(transaction=False)
        shim = _ShaPipeline(pipe)
        for i, (kind, args) in enumerate(items, 1):
            client.enqueue_to(bj.QUEUE, bj.ours_class(kind), *args, result_ttl=result_ttl,
                              pipeline=cast(Any, shim))
            if i % chunk == 0:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()
    if shim.rewritten != len(items):  # a client that no longer sends the workflow script
        raise BenchError(f"{len(items)} tracked enqueues sent {shim.rewritten} workflow calls")


class WorkflowBench(ScaleBench):
    """:class:`ScaleBench` with the workflow rows."""

    # -- results ---------------------------------------------------------------------------------

    def results(self, system: System) -> None:
        """The no-op drain of ``system`` (labelled ``..., results``), every job tracked."""
        self._under_plain(system.label)
        enqueue = partial(enqueue_tracked, self.url)
        self.measure("drain", system, "jobs/s",
                     lambda row: self.timed(system, "noop", (), self.settings.jobs, row,
                                            enqueue=enqueue, count=("eval", "evalsha")))

    def _under_plain(self, label: str) -> None:
        """Create the drain row ``label`` right under its plain twin's, when that exists."""
        if any((r.workload, r.system) == ("drain", label) for r in self.rows):
            return
        row = self.row("drain", label, "jobs/s")
        plain = label.removesuffix(RESULTS_SUFFIX)
        at = next((i for i, r in enumerate(self.rows)
                   if (r.workload, r.system) == ("drain", plain)), None)
        if at is not None:
            self.rows.remove(row)
            self.rows.insert(at + 1, row)

    # -- batch -----------------------------------------------------------------------------------

    def batch(self, system: System) -> None:
        """A batch of ``batch_jobs`` drained by ``system``; its rows (see the module)."""
        n = self.settings.batch_jobs
        latency = self.row("workflow", system.label, "ms", higher=False)
        # Opening and memory are the bench's client and Redis: measured beside this checkout's
        # worker only (a --baseline twin would measure the same thing again).
        labels = batch_labels(n) if system.checkout is None else {}
        rows = {"latency": latency}
        for key, label in labels.items():
            rows[key] = self.row("workflow", label, "ms" if key == "open" else "MB", higher=False)
        if system.framework in self.skipped:
            for row in rows.values():
                row.note = self.skipped[system.framework]
            return
        try:
            measured = self._batch(system, n)
        except (BenchError, redis.RedisError, OSError, subprocess.SubprocessError) as exc:
            for row in rows.values():
                row.note = f"failed: {exc}"[:300]
            print(f"  workflow {system.label:34} FAILED: {exc}", file=sys.stderr)
            return
        for key, row in rows.items():
            for name, value in measured[key].items():
                row.samples.setdefault(name, []).append(value)
            print(f"  workflow {row.system:34} {measured[key]['value']:12,.3f} {row.unit}",
                  file=sys.stderr)

    def _memory(self) -> int:
        """Redis's ``used_memory`` without its script cache (the worker loads its claim script
        during the run: no part of the batch)."""
        info: Any = self.conn.info("memory")
        return int(info["used_memory"]) - int(info.get("used_memory_scripts", 0))

    def _script_usec(self) -> int:
        """Microseconds Redis has spent in ``EVAL`` and ``EVALSHA`` so far."""
        stats: Any = self.conn.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("eval", "evalsha"))

    def _open(self, n: int) -> tuple[str, Metrics]:
        """Build and open the batch on a connection of its own (closed after: its buffers are
        no part of the batch's memory); its id and the open row's metrics."""
        client = Client(url=self.url)
        try:
            batch = client.batch(on_success=(bj.ours_class("noop"), ["batch done"]),
                                 queue=CALLBACK_QUEUE, description="bench")
            started = time.perf_counter()
            for _ in range(n):
                batch.enqueue_to(bj.QUEUE, bj.ours_class("endmax"))
            built, usec = time.perf_counter(), self._script_usec()
            batch.open()  # what leaving `with client.batch(...)` does: one script call
            opened = time.perf_counter()
            in_redis = (self._script_usec() - usec) / 1000
        finally:
            client.close()
        return batch.id, {"value": (opened - built) * 1000, "redis_ms": in_redis,
                          "build_ms": (built - started) * 1000}

    def _watch(self, worker: Worker, timeout: float) -> Optional[float]:
        """``time.time()`` when the callback was moved off its queue, or None if it never came
        (the worker exited, or ``timeout`` seconds passed)."""
        deadline, conn = time.monotonic() + timeout, cast(Any, self.conn)  # (a float timeout)
        while time.monotonic() < deadline:
            alive = worker.alive()
            # (BLMOVE wakes when the callback is pushed; a slice only bounds the wait)
            moved = conn.blmove(_CALLBACK_KEY, CALLBACK_SEEN, 0.5 if alive else 0.05,
                                "LEFT", "RIGHT")
            if moved is not None:
                return time.time()
            if not alive:
                return None
        return None

    def _batch(self, system: System, n: int) -> dict[str, Metrics]:
        conn, keys = self.conn, wire.Keys()
        conn.flushall()
        conn.script_load(WORKFLOW_SOURCE)
        empty = self._memory()
        batch_id, opened = self._open(n)
        pending = self._memory() - empty
        if conn.llen(keys.queue(bj.QUEUE)) != n:
            raise BenchError(f"the batch queued {conn.llen(keys.queue(bj.QUEUE))} of {n} jobs")
        worker = self.worker(system, burst=True)
        timeout = 120 + n / 50
        try:
            seen = self._watch(worker, timeout)
            if seen is not None:
                worker.proc.wait(timeout)  # burst: it exits once the queue is empty
        except subprocess.TimeoutExpired:
            raise BenchError(f"no exit after {timeout:.0f}s") from None
        finally:
            peak, tail = worker.stop()
        status = Client(conn).batch_status(batch_id)
        if seen is None:
            left = "no record" if status is None else f"{status.pending} of {n} pending"
            raise BenchError(f"no callback on {CALLBACK_QUEUE} (the batch: {left}) after the "
                             f"worker exited: {' | '.join(tail.strip().splitlines()[-2:])}")
        completed = self._memory() - empty
        last_end = conn.zscore(bj.LAST_END, "end")
        if status is None or status.completed_at is None or last_end is None:
            raise BenchError("the callback came but the batch is not complete, or no job ended")
        if status.succeeded != n or conn.llen(_CALLBACK_KEY) or conn.llen(CALLBACK_SEEN) != 1:
            raise BenchError(f"{status.succeeded} of {n} jobs succeeded; callbacks "
                             f"{conn.llen(CALLBACK_SEEN)} + {conn.llen(_CALLBACK_KEY)} left")
        latency: Metrics = {"value": (seen - float(last_end)) * 1000,
                            "from_finish_ms": (seen - status.completed_at) * 1000}
        if peak is not None:
            latency["rss_mb"] = peak
        return {"latency": latency, "open": opened,
                "pending": {"value": pending / _MB, "bytes_per_job": pending / n},
                "completed": {"value": completed / _MB, "bytes_per_job": completed / n}}


def _median(rows: list[Row], workload: str, system: str, metric: str = "value"
            ) -> Optional[float]:
    row = next((r for r in rows if (r.workload, r.system) == (workload, system)), None)
    return row.median(metric) if row is not None else None


def notes(rows: list[Row]) -> list[str]:
    """Each results row set against its plain drain row: what keeping results costs."""
    out = []
    for row in rows:
        if row.workload != "drain" or not row.system.endswith(RESULTS_SUFFIX):
            continue
        plain = row.system.removesuffix(RESULTS_SUFFIX)
        got = {m: (_median(rows, "drain", row.system, m), _median(rows, "drain", plain, m))
               for m in ("value", "cmds_per_job", "scripts_per_job", "rts_per_job",
                         "redis_cpu_us", "worker_cpu_us")}
        if any(a is None or b is None for a, b in got.values()):
            continue
        (rate, rate0), (cmds, cmds0), (evals, evals0), (rts, rts0), (rcpu, rcpu0), (
            wcpu, wcpu0) = (cast(tuple[float, float], v) for v in got.values())
        out.append(f"workflow: {row.system} vs {plain}: jobs/s x{rate / rate0:.3f}, cmds/job "
                   f"{cmds - cmds0:+.2f} (top-level: script calls {evals - evals0:+.3f}/job; "
                   f"the rest run inside them), RTs/job {rts - rts0:+.3f}, Redis us/job "
                   f"{rcpu - rcpu0:+.1f}, worker us/job {wcpu - wcpu0:+.1f}")
    return out
