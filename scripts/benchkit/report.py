"""What the benchmark runs (its systems), and its report: tables, ratios and targets."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any, Optional

import redis

from benchkit import sidekiq as bench_sidekiq
from benchkit.common import Row, Settings, System
from benchkit.scale import PAYLOAD_FLOOR, size_label
from benchkit.workflow import RESULTS_SUFFIX
from benchkit.workloads import FLOOR

__all__ = ["DRAIN", "LATENCY", "LOGGING", "RESULTS", "batch_system", "idle_systems",
           "io_scale_systems", "io_systems", "machine_info", "package_hash", "payload_floor",
           "payload_systems", "ratio_pairs", "render", "targets"]

ROOT = Path(__file__).resolve().parents[2]

OURS_1, OURS_8, OURS_2X4, OURS_2X8, OURS_25 = (
    System("ours 1 proc x 1 slot", "pyresque", 1), System("ours 1 proc x 8 slots", "pyresque", 8),
    System("ours 2 procs x 4 slots", "pyresque", 4, 2),
    System("ours 2 procs x 8 slots", "pyresque", 8, 2),
    System("ours 1 proc x 25 slots", "pyresque", 25))
PEER_DRAIN = [
    System("rq SimpleWorker", "rq"),
    # dramatiq backs off up to 1 s when idle; arq polls every 0.5 s by default.
    System("dramatiq 1 proc x 8 threads", "dramatiq", 8, idle_cycle=0.5),
    System("arq (defaults)", "arq", idle_cycle=0.5),
    System("arq (poll 10 ms)", "arq", poll=0.01)]
SIDEKIQ = [System("sidekiq (default concurrency)", "sidekiq"),
           System("sidekiq c=10", "sidekiq", 10)]
# The cost of job history: the same single slot with --history on.
OURS_1_HISTORY = System("ours 1 proc x 1 slot --history", "pyresque", 1,
                        extra=("--history", "1d"))
DRAIN = [OURS_1, OURS_1_HISTORY, OURS_8, OURS_2X4, OURS_2X8, OURS_25, *PEER_DRAIN, *SIDEKIQ]
# Pick-up from the last (lightest) of five watched queues: every other queue is checked first.
OURS_LAST_OF_5 = System("ours 1 slot, 5th of 5 queues", "pyresque", 1,
                        queues=("q1", "q2", "q3", "q4", "bench"))
LATENCY = [OURS_1, OURS_LAST_OF_5, OURS_8, *PEER_DRAIN]
LOGGING = [System("ours 1x1 --log-level info", "pyresque", 1, log_level="info"),
           System("ours 1x1 --log-level warning", "pyresque", 1)]
PAYLOAD = [System("ours 1 proc x 1 slot", "pyresque", 1), System("rq SimpleWorker", "rq")]
# workflow: the drain with every job keeping its result (drain rows, under the plain ones).
RESULTS = [System(s.label + RESULTS_SUFFIX, "pyresque", s.concurrency) for s in (OURS_1, OURS_8)]


def batch_system(settings: Settings) -> System:
    """workflow: the worker that drains the batch; its row is the last end → callback time."""
    return System(f"{OURS_8.label}, batch of {settings.batch_jobs:,}: last job end → callback "
                  "enqueued", "pyresque", 8)


def io_systems(c: int) -> list[System]:
    return [System(f"ours 1 proc x {c} slots", "pyresque", c),
            System(f"dramatiq 1 proc x {c} threads", "dramatiq", c),
            System(f"arq max_jobs={c} (poll 0.5 s)", "arq", c),
            System(f"arq max_jobs={c}, poll 10 ms", "arq", c, poll=0.01)]


def io_scale_systems(c: int, connections: Optional[int] = None) -> list[System]:
    """Ours on the asyncio execution at concurrency ``c``; dramatiq's 1,000 threads at 1,000."""
    extra: tuple[str, ...] = ("--execution", "asyncio")
    label = f"ours asyncio C={c:,}"
    if connections:
        extra, label = (*extra, "--connections", str(connections)), f"{label} K={connections}"
    systems = [System(label, "pyresque", c, extra=extra)]
    if c == 1000:
        systems.append(System("dramatiq 1 proc x 1,000 threads", "dramatiq", 1000))
    return systems


def payload_systems(size: int) -> tuple[str, str]:
    return f"{PAYLOAD[0].label}, {size_label(size)}", f"{PAYLOAD[1].label}, {size_label(size)}"


def payload_floor(size: int) -> str:
    """The row of Resque's bare commands for a job of ``size`` bytes."""
    return f"{PAYLOAD_FLOOR}, {size_label(size)}"


def idle_systems(settings: Settings) -> list[tuple[System, float]]:
    """(system, its --interval) for each idle configuration."""
    out = []
    for procs, slots, queues, interval in settings.idle:
        label = f"ours idle {procs}x{slots}x{queues}" + (
            f" --interval {interval:g}" if interval != 1.0 else "")
        out.append((System(label, "pyresque", slots, procs,
                           queues=tuple(f"q{k}" for k in range(1, queues + 1)),
                           extra=("--interval", f"{interval:g}")), interval))
    return out


def ratio_pairs(settings: Settings) -> list[tuple[str, str, str, str, str]]:
    """(workload, unit, ours, peer, metric) pairs shown as ours / peer."""
    pairs = [("drain", "jobs/s", s.label, p) for s in (OURS_1, OURS_8, OURS_2X8)
             for p in (FLOOR, *(q.label for q in (*PEER_DRAIN, *SIDEKIQ)))]
    pairs += [("enqueue", "jobs/s", "ours enqueue_to", p) for p in (
        "floor: SADD+RPUSH pipeline/job", "rq Queue.enqueue", "dramatiq broker.enqueue",
        "arq enqueue_job")]
    pairs += [("enqueue", "jobs/s", "ours enqueue_many", p) for p in (
        "floor: SADD+RPUSH x1000 pipeline", "rq Queue.enqueue_many")]
    io = io_systems(settings.io_concurrency)
    pairs += [("io", "jobs/s", io[0].label, s.label) for s in io[1:]]
    pairs += [("latency", unit, OURS_1.label, s.label) for unit in ("ms p50", "ms p99")
              for s in PEER_DRAIN]
    pairs += [("latency", "ms p50", OURS_LAST_OF_5.label, OURS_1.label)]
    payloads = [payload_systems(size) for size, _ in settings.payloads]
    pairs += [("payload", "jobs/s", ours, peer) for ours, peer in payloads]
    pairs += [("logging", "jobs/s", LOGGING[0].label, LOGGING[1].label)]
    scale = [s.label for c, _ in settings.io_scale
             for s in io_scale_systems(c, settings.io_connections)]
    pairs += [("ioscale", "jobs/s", a, b) for a, b in zip(scale, scale[1:])
              if b.startswith("dramatiq")]
    idle = [s.label for s, _ in idle_systems(settings)]
    pairs += [("idle", "cmds/s", s, idle[0]) for s in idle[1:]]
    out = [(w, u, o, p, "value") for w, u, o, p in pairs]
    out += [("drain", "jobs/s", OURS_1.label, s.label, "redis_cpu_us") for s in SIDEKIQ]
    out += [("payload", "jobs/s", ours, peer, "redis_cpu_us") for ours, peer in payloads]
    out += [("payload", "jobs/s", ours, payloads[0][0], "redis_cpu_us")
            for ours, _ in payloads[1:]]
    # How far each size is above Resque's bare commands, and the growth of those commands alone
    sizes = [size for size, _ in settings.payloads]
    out += [("payload", "jobs/s", ours, payload_floor(size), "redis_cpu_us")
            for (ours, _), size in zip(payloads, sizes)]
    out += [("payload", "jobs/s", payload_floor(size), payload_floor(sizes[0]), "redis_cpu_us")
            for size in sizes[1:]]
    return out


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _med(rows: list[Row], workload: str, system: str, unit: str = "jobs/s",
         metric: str = "value") -> Optional[float]:
    row = next((r for r in rows if (r.workload, r.system, r.unit) == (workload, system, unit)),
               None)
    return row.median(metric) if row else None


def ratios(rows: list[Row], settings: Settings) -> list[dict[str, Any]]:
    return [{"workload": w, "unit": u, "ours": o, "peer": p, "metric": m, "ratio": a / b}
            for w, u, o, p, m in ratio_pairs(settings)
            if (a := _med(rows, w, o, u, m)) is not None and (b := _med(rows, w, p, u, m))]


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def _idle_total(rows: list[Row], system: str) -> Optional[float]:
    """Commands/s of an idle row, the larger of its two counts: commandstats counts a blocking
    command when it returns (one that outlives the window is missed), MONITOR when it starts."""
    stats = _med(rows, "idle", system, "cmds/s")
    top, inner = (_med(rows, "idle", system, "cmds/s", m)
                  for m in ("top_level_per_s", "inner_per_s"))
    seen = top + inner if top is not None and inner is not None else None
    return max((v for v in (stats, seen) if v is not None), default=None)


def targets(rows: list[Row], settings: Settings) -> list[dict[str, Any]]:
    """The issues' targets with the measured medians and whether each is met."""
    def best(systems: list[System]) -> Optional[float]:
        values = [v for s in systems if (v := _med(rows, "drain", s.label)) is not None]
        return max(values, default=None)

    one_proc = best([OURS_1, OURS_8])
    # Keeping results, the worse of 1 and 8 slots: EVALs per job over the plain drain's (the
    # finish script; the claim is an EVALSHA, and a worker's periodic queue-head probe, an EVAL,
    # adds up to 1/jobs to either: hence a goal of 1.01), and round trips per job over plain.
    def more(metric: str, alone: bool) -> list[float]:
        out = []
        for s in RESULTS:
            a = _med(rows, "drain", s.label, metric=metric)
            b = _med(rows, "drain", s.label.removesuffix(RESULTS_SUFFIX), metric=metric)
            if a is not None and (b is not None or alone):
                out.append(a - (b or 0.0))
        return out
    rts = [v for s in (OURS_1, OURS_8, OURS_2X4, OURS_2X8, OURS_25)
           if (v := _med(rows, "drain", s.label, metric="rts_per_job")) is not None]
    sizes = dict(settings.payloads)
    tiny, huge = (payload_systems(s)[0] if s in sizes else "" for s in (100, 1_000_000))
    by_c = {c: io_scale_systems(c, settings.io_connections)[0].label
            for c, _ in settings.io_scale}
    idle = {s.label: s for s, _ in idle_systems(settings)}
    checks: list[tuple[str, Optional[float], float, bool]] = [
        ("drain, 1 process / rq SimpleWorker",
         _ratio(one_proc, _med(rows, "drain", PEER_DRAIN[0].label)), 20, True),
        ("drain, 1 process / dramatiq 8 threads",
         _ratio(one_proc, _med(rows, "drain", PEER_DRAIN[1].label)), 2.5, True),
        ("drain, 1 process / floor", _ratio(one_proc, _med(rows, "floor", FLOOR)), 0.70, True),
        ("drain, 1 slot with --history / without",
         _ratio(_med(rows, "drain", OURS_1_HISTORY.label), _med(rows, "drain", OURS_1.label)),
         0.85, True),
        ("drain, best configuration (jobs/s)", best([OURS_1, OURS_8, OURS_2X4, OURS_2X8, OURS_25]),
         10_000, True),
        ("drain, round trips per job (worst of ours)", max(rts, default=None), 1.5, False),
        ("drain, Redis CPU per job, 1 slot (us)",
         _med(rows, "drain", OURS_1.label, metric="redis_cpu_us"), 40, False),
        ("drain with results, script calls/job over plain", max(more("scripts_per_job", True),
                                                         default=None), 1.01, False),
        ("drain with results, RTs/job over plain", max(more("rts_per_job", False),
                                                       default=None), 0.05, False),
        ("enqueue_to (jobs/s)", _med(rows, "enqueue", "ours enqueue_to"), 7_000, True),
        ("enqueue_many (jobs/s)", _med(rows, "enqueue", "ours enqueue_many"), 80_000, True),
        ("I/O-bound (jobs/s)", _med(rows, "io", io_systems(settings.io_concurrency)[0].label),
         1_600, True),
        ("idle pick-up p50, 1 slot (ms)", _med(rows, "latency", OURS_1.label, "ms p50"), 20,
         False),
        ("idle pick-up p99, 1 slot (ms)", _med(rows, "latency", OURS_1.label, "ms p99"), 100,
         False),
        ("idle pick-up p50, 5th of 5 queues (ms)",
         _med(rows, "latency", OURS_LAST_OF_5.label, "ms p50"), 5, False),
        ("peak RSS with 25 slots (MB)", _med(rows, "drain", OURS_25.label, metric="rss_mb"), 50,
         False),
        ("payload, Redis CPU per job 1 MB / 100 B",
         _ratio(_med(rows, "payload", huge, metric="redis_cpu_us"),
                _med(rows, "payload", tiny, metric="redis_cpu_us")), 15, False),
        ("io asyncio C=1,000 / dramatiq 1,000 threads",
         _ratio(_med(rows, "ioscale", by_c.get(1000, "")),
                _med(rows, "ioscale", "dramatiq 1 proc x 1,000 threads")), 2, True),
        ("io asyncio C=10,000 peak RSS (MB)",
         _med(rows, "ioscale", by_c.get(10_000, ""), metric="rss_mb"), 300, False),
        ("io asyncio C=10,000 start-up (s)",
         _med(rows, "ioscale", by_c.get(10_000, ""), metric="startup_s"), 5, False),
        ("logging, drain at info / at warning",
         _ratio(_med(rows, "logging", LOGGING[0].label), _med(rows, "logging", LOGGING[1].label)),
         0.85, True),
        ("idle 50x8x5, commands/s (incl. in scripts)", _idle_total(rows, "ours idle 50x8x5")
         if "ours idle 50x8x5" in idle else None, 250, False),
    ]
    return [{"target": name, "measured": value, "goal": (">= " if up else "<= ") + _fmt(goal),
             "met": None if value is None else (value >= goal if up else value <= goal)}
            for name, value, goal, up in checks]


# (workloads, columns): one table each; columns are per job unless said otherwise.
TABLES: list[tuple[tuple[str, ...], list[tuple[str, str]]]] = [
    (("floor", "drain", "enqueue", "io", "latency", "payload", "logging"),
     [("cmds_per_job", "cmds/job"), ("rts_per_job", "RTs/job"), ("worker_cpu_us", "wkr us/job"),
      ("redis_cpu_us", "Redis us/job"), ("rss_mb", "RSS MB")]),
    (("ioscale",),
     [("cmds_per_job", "cmds/job"), ("redis_cpu_us", "Redis us/job"), ("conns", "Redis conns"),
      ("threads", "threads"), ("rss_mb", "RSS MB"), ("startup_s", "start-up s")]),
    (("workflow",),  # value: ms or MB, as the unit says
     [("from_finish_ms", "finish→cb ms"), ("redis_ms", "in Redis ms"), ("build_ms", "build ms"),
      ("bytes_per_job", "bytes/job"), ("rss_mb", "RSS MB")]),
    (("idle",),  # value: commands/s, script-inner ones included
     [("top_level_per_s", "top-level/s"), ("inner_per_s", "in scripts/s"),
      ("redis_cpu_pct", "Redis CPU %"), ("conns", "Redis conns"), ("startup_s", "start-up s"),
      ("rss_mb", "RSS MB")]),
]


def _table(rows: list[Row], columns: list[tuple[str, str]]) -> list[str]:
    head, width = "".join(f"{title:>13}" for _, title in columns), max(34, *map(len, (
        r.system for r in rows)))
    out = [f"{'workload':8} {'system':{width}} {'median':>9} {'min-max':>17} {'unit':7}{head}"
           "  note"]
    for r in rows:
        values = r.samples.get("value", [])
        spread = f"{_fmt(min(values))}-{_fmt(max(values))}" if values else "-"
        cells = "".join(f"{_fmt(r.median(m)):>13}" for m, _ in columns)
        out.append(f"{r.workload:8} {r.system:{width}} {_fmt(r.median()):>9} {spread:>17} "
                   f"{r.unit:7}{cells}  {r.note}")
    return out


def render(rows: list[Row], ratio_rows: list[dict[str, Any]],
           checks: list[dict[str, Any]]) -> str:
    """The tables, the ratios and the targets as text."""
    out: list[str] = []
    for workloads, columns in TABLES:
        selected = [r for r in rows if r.workload in workloads]
        if selected:
            out += [*([""] if out else []), *_table(selected, columns)]
    out += ["", "Ratios ours / peer, medians (jobs/s: higher is better; ms, cmds/s and us: "
            "lower is better)"]
    out += [f"  {q['workload']:8} {q['unit'] if q['metric'] == 'value' else q['metric']:12} "
            f"{q['ours']:34} / {q['peer']:34} {q['ratio']:8.3g}" for q in ratio_rows]
    out += ["", "Targets"]
    out += [f"  {c['target']:46} {_fmt(c['measured']):>9}  goal {c['goal']:9} "
            f"{({True: 'met', False: 'MISSED', None: 'not measured'})[c['met']]}"
            for c in checks]
    return "\n".join(out)


def machine_info(url: str, settings: Settings) -> dict[str, Any]:
    """What the numbers were measured on (and which code: a hash of the package's files)."""
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh
                        if ln.startswith("model name")), "")
    versions: dict[str, Optional[str]] = {}
    for dist in ("pyresqueworker", "redis", "hiredis", "rq", "dramatiq", "arq"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    if "sidekiq" in settings.peers:
        versions["sidekiq (ruby)"] = bench_sidekiq.version()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(),
            "redis_server": redis.Redis.from_url(url).info("server").get("redis_version"),
            "load_avg_start": os.getloadavg(), "versions": versions,
            "package_sha256": package_hash()}


def package_hash(root: Path = ROOT) -> str:
    """A hash of the package's source (this checkout's, or the one at ``root``), to tell which
    code was measured."""
    digest = hashlib.sha256()
    for path in sorted((root / "pyresqueworker").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
