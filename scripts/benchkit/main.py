"""The benchmark's driver: every selected workload, runs interleaved, then the report.

``scripts/bench.py`` is its command line (see there for the usage).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

from benchkit import jobs as bj
from benchkit import report as rep
from benchkit.common import WORKLOADS, Row, Settings, System
from benchkit.redis_server import Pinning, redis_server
from benchkit.scale import ScaleBench

__all__ = ["Row", "Settings", "System", "main", "run"]

QUICK = dict(runs=1, jobs=2_000, io_jobs=200, latency_samples=20,
             payloads=((10_000, 200),), io_scale=((100, 300),), idle=((1, 1, 1, 1.0),),
             idle_window=2.0)


def run(settings: Settings, url: str, pinning: Pinning) -> tuple[dict[str, Any], list[Row]]:
    """Every selected workload, ``settings.runs`` times, runs interleaved across systems."""
    bench, rng, only = ScaleBench(url, settings, pinning), random.Random(0), settings.only
    info = {**rep.machine_info(url, settings), "pinning": pinning.describe()}
    for n in range(settings.runs):
        print(f"run {n + 1}/{settings.runs}", file=sys.stderr)
        if "floor" in only:
            bench.floor()
        for system in rep.DRAIN if "drain" in only else []:
            bench.drain(system)
        if "enqueue" in only:
            bench.enqueue()
        for system in rep.io_systems(settings.io_concurrency) if "io" in only else []:
            bench.io(system)
        for size, jobs in settings.payloads if "payload" in only else []:
            for system in rep.PAYLOAD:
                bench.payload(system, size, jobs)
            bench.payload_floor(size, jobs)
        for system in rep.LOGGING if "logging" in only else []:
            bench.logging(system)
        for c, jobs in settings.io_scale if "ioscale" in only else []:
            for system in rep.io_scale_systems(c, settings.io_connections):
                bench.io_scale(system, jobs)
        for system in rep.LATENCY if "latency" in only else []:
            bench.latency(system, rng)
        for system, interval in rep.idle_systems(settings) if "idle" in only else []:
            bench.idle(system, interval)
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
    rows = bench.rows
    results = {"machine": info, "settings": asdict(settings), "notes": bench.notes,
               "rows": [{**asdict(r), "median": {m: r.median(m) for m in r.samples}}
                        for r in rows],
               "ratios": rep.ratios(rows, settings), "targets": rep.targets(rows, settings)}
    return results, rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: seconds")
    parser.add_argument("--json", default="bench-results.json", help="results file")
    parser.add_argument("--runs", type=int, help="runs of each workload (3; quick 1)")
    parser.add_argument("--jobs", type=int, help="drain, floor and enqueue jobs (20,000)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads to run")
    parser.add_argument("--peers", default=",".join(bj.PEERS), help="peers ('' for none)")
    parser.add_argument("--io-connections", type=int, help="ours --connections K (ioscale)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin Redis and workers")
    args = parser.parse_args(argv)
    only = tuple(w for w in args.only.split(",") if w)
    peers = tuple(p for p in args.peers.split(",") if p)
    unknown = (set(only) - set(WORKLOADS)) | (set(peers) - set(bj.PEERS))
    if unknown:
        parser.error(f"unknown workload or peer: {', '.join(sorted(unknown))}")
    settings = Settings(peers=peers, only=only, io_connections=args.io_connections,
                        pin=not args.no_pin)
    if args.quick:
        settings = replace(settings, **QUICK)  # type: ignore[arg-type]
    settings = replace(settings, runs=args.runs or settings.runs,
                       jobs=max(args.jobs or settings.jobs, 3))
    pinning = Pinning(settings.pin)
    with redis_server(pinning) as url:
        results, rows = run(settings, url, pinning)
    m, s = results["machine"], settings
    print(f"pyresqueworker benchmark, {m['date']}: {m['nproc']} CPUs ({m['cpu']}), Python "
          f"{m['python']}, redis-server {m['redis_server']}, {m['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) +
          f"; package sha256 {m['package_sha256']}; load average at start "
          f"{m['load_avg_start'][0]:.2f}, at end {m['load_avg_end'][0]:.2f}")
    print(f"{s.runs} run(s) each; drain/floor/enqueue {s.jobs:,} jobs; io {s.io_jobs:,} x "
          f"{s.io_sleep * 1000:.0f} ms at concurrency {s.io_concurrency}; latency "
          f"{s.latency_samples} samples; pinning: {m['pinning']}\n")
    print(rep.render(rows, results["ratios"], results["targets"]))
    for note in results["notes"]:
        print(f"note: {note}")
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0

