"""The benchmark's driver: every selected workload, runs interleaved, then the report.

``scripts/bench.py`` is its command line (see there for the usage).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any, Optional

from benchkit import baseline as bl
from benchkit import compare as cmp
from benchkit import jobs as bj
from benchkit import report as rep
from benchkit import workflow as wf
from benchkit.common import OPT_IN, WORKLOADS, Checkout, Row, Settings, System
from benchkit.redis_server import Pinning, redis_server

__all__ = ["Row", "Settings", "System", "main", "run"]

QUICK = dict(runs=1, jobs=2_000, io_jobs=200, latency_samples=20,
             payloads=((10_000, 200),), io_scale=((100, 300),), idle=((1, 1, 1, 1.0),),
             idle_window=2.0)


_INTERRUPTED = threading.Event()


def _on_ctrl_c(_signum: int, _frame: Optional[FrameType]) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _go(systems: Iterable[System]) -> Iterator[System]:
    """``systems`` one by one, the run stopped after Ctrl-C. Ctrl-C also reaches the workers
    and Redis (one process group), and a row that fails is recorded and the run goes on: left
    alone, every row after it would fail and the report would be written as if complete."""
    for system in systems:
        if _INTERRUPTED.is_set():
            raise KeyboardInterrupt
        yield system


def run(settings: Settings, url: str, pinning: Pinning,
        baseline: Optional[Checkout] = None) -> tuple[dict[str, Any], list[Row]]:
    """Every selected workload, ``settings.runs`` times, runs interleaved across systems (and
    each of ours beside its twin on ``baseline``, when given)."""
    bench, rng, only = wf.WorkflowBench(url, settings, pinning), random.Random(0), settings.only
    info = {**rep.machine_info(url, settings), "pinning": pinning.describe()}
    pair = bl.Pairing(baseline)
    for n in range(settings.runs):
        print(f"run {n + 1}/{settings.runs}", file=sys.stderr)
        pair.run = n
        if "floor" in only:
            bench.floor()
        for system in _go(pair.each(rep.DRAIN)) if "drain" in only else []:
            bench.drain(system)
        for system in _go(pair.each(rep.RESULTS)) if "workflow" in only else []:
            bench.results(system)
        for system in _go(pair(rep.batch_system(settings))) if "workflow" in only else []:
            bench.batch(system)
        if "enqueue" in only:
            bench.enqueue()
        io = rep.io_systems(settings.io_concurrency) if "io" in only else []
        for system in _go(pair.each(io)):
            bench.io(system)
        for size, jobs in settings.payloads if "payload" in only else []:
            for system in _go(pair.each(rep.PAYLOAD)):
                bench.payload(system, size, jobs)
            bench.payload_floor(size, jobs)
        for system in _go(pair.each(rep.LOGGING)) if "logging" in only else []:
            bench.logging(system)
        for c, jobs in settings.io_scale if "ioscale" in only else []:
            for system in _go(pair.each(rep.io_scale_systems(c, settings.io_connections))):
                bench.io_scale(system, jobs)
        for system in _go(pair.each(rep.LATENCY)) if "latency" in only else []:
            bench.latency(system, rng)
        for idle, interval in rep.idle_systems(settings) if "idle" in only else []:
            for system in _go(pair(idle)):
                bench.idle(system, interval)
    if _INTERRUPTED.is_set():  # during the last row
        raise KeyboardInterrupt
    info["load_avg_end"] = os.getloadavg()
    if rep.package_hash() != info["package_sha256"]:
        bench.notes.append("the package's source changed during the run: results mix versions")
    if "io" in only and "rq" not in bench.skipped:
        bench.notes.append(f"io: rq SimpleWorker not run (one job at a time: {settings.io_jobs}"
                           f" x {settings.io_sleep * 1000:.0f} ms)")
    if "idle" in only:
        bench.notes.append("idle: value = Redis commands/s including those run inside Lua "
                           "scripts (INFO commandstats); top-level/s counts an EVALSHA as one "
                           "(MONITOR, in a second window of the same length); commandstats "
                           "counts a blocking command when it returns, MONITOR when it is sent: "
                           "the target takes the larger")
    if "workflow" in only:
        bench.notes += wf.notes(bench.rows)
        bench.notes.append(
            f"workflow: results rows enqueue every job as Client.enqueue_to(..., result_ttl="
            f"{wf.RESULT_TTL}) writes it; their cmds/job count the commands run inside the "
            "finish script too. Batch: last job end = time.time() in the job, callback = the "
            "bench's BLMOVE of it returning (finish→cb ms: from the batch's completed_at, the "
            "worker's stamp); memory = used_memory over the empty database")
    if baseline is not None and {"floor", "enqueue"} & set(only):
        bench.notes.append("floor and enqueue run in the bench's own process, on this "
                           f"checkout's code: not compared with {baseline.name}")
    rows = bench.rows
    results = {"machine": info, "settings": asdict(settings), "notes": bench.notes,
               "rows": [{**asdict(r), "median": {m: r.median(m) for m in r.samples}}
                        for r in rows],
               "ratios": rep.ratios(rows, settings), "targets": rep.targets(rows, settings)}
    if baseline is not None:
        results["baseline"] = {"name": baseline.name, "ref": baseline.ref, "sha": baseline.sha,
                               "entry": baseline.entry, "root": baseline.root,
                               "package_sha256": rep.package_hash(Path(baseline.root)),
                               "comparisons": cmp.compare(rows, baseline)}
    return results, rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: seconds")
    parser.add_argument("--json", default="bench-results.json", help="results file")
    parser.add_argument("--runs", type=int, help="runs of each workload (3; quick 1)")
    parser.add_argument("--jobs", type=int, help="drain, floor and enqueue jobs (20,000)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"workloads to run (default: all but {', '.join(OPT_IN)})")
    parser.add_argument("--peers", default=",".join(bj.PEERS), help="peers ('' for none)")
    parser.add_argument("--io-connections", type=int, help="ours --connections K (ioscale)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin Redis and workers")
    parser.add_argument("--baseline", metavar="REF",
                        help="also run our worker at git revision REF (main, a commit, HEAD~3) "
                             "beside this checkout's, and compare the two")
    args = parser.parse_args(argv)
    only = tuple(w for w in args.only.split(",") if w)
    peers = tuple(p for p in args.peers.split(",") if p)
    unknown = (set(only) - {*WORKLOADS, *OPT_IN}) | (set(peers) - set(bj.PEERS))
    if unknown:
        parser.error(f"unknown workload or peer: {', '.join(sorted(unknown))}")
    settings = Settings(peers=peers, only=only, io_connections=args.io_connections,
                        pin=not args.no_pin)
    if args.quick:
        settings = replace(settings, **QUICK)  # type: ignore[arg-type]
    settings = replace(settings, runs=args.runs or settings.runs,
                       jobs=max(args.jobs or settings.jobs, 3))
    pinning = Pinning(settings.pin)
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        with ExitStack() as stack:  # the baseline's directory goes last, after its workers
            code = stack.enter_context(bl.checkout(args.baseline)) if args.baseline else None
            url = stack.enter_context(redis_server(pinning))
            results, rows = run(settings, url, pinning, code)
    except KeyboardInterrupt:
        print("interrupted: no report written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    m, s = results["machine"], settings
    print(f"pyresqueworker benchmark, {m['date']}: {m['nproc']} CPUs ({m['cpu']}), Python "
          f"{m['python']}, redis-server {m['redis_server']}, {m['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) +
          f"; package sha256 {m['package_sha256']}; load average at start "
          f"{m['load_avg_start'][0]:.2f}, at end {m['load_avg_end'][0]:.2f}")
    print(f"{s.runs} run(s) each; drain/floor/enqueue {s.jobs:,} jobs; io {s.io_jobs:,} x "
          f"{s.io_sleep * 1000:.0f} ms at concurrency {s.io_concurrency}; latency "
          f"{s.latency_samples} samples"
          + (f"; workflow batch {s.batch_jobs:,} jobs" if "workflow" in s.only else "")
          + f"; pinning: {m['pinning']}\n")
    if code is not None:
        b = results["baseline"]
        print(f"baseline: {b['name']} = {b['ref']} ({b['sha']}), package sha256 "
              f"{b['package_sha256']}, run from a temporary git archive (removed); after = "
              f"this working tree\n")
    print(rep.render(rows, results["ratios"], results["targets"]))
    if code is not None:
        print("\n" + cmp.render(results["baseline"]["comparisons"], code))
    for note in results["notes"]:
        print(f"note: {note}")
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0

