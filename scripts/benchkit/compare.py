"""Before and after (``--baseline REF``): each of our rows beside its twin on the baseline.

Before is the baseline's worker (``ours@<short sha>``), after is this checkout's (``ours``),
measured in the same run. The value's ratio is after / before (jobs/s: higher is better; ms
and cmds/s: lower is better); a ratio more than 5 % off in the bad direction is flagged
``WORSE``, in the good one ``better``. Redis CPU per job and commands and round trips per
job are shown as after - before; more commands or round trips per job than before (by more
than :data:`COUNT_SLACK`) is flagged too: the issue asks for the same or fewer.
"""

from __future__ import annotations

from typing import Any, Optional

from benchkit.common import Checkout, Row

__all__ = ["COUNT_SLACK", "TOLERANCE", "compare", "render"]

TOLERANCE = 0.05  # a value within +-5 % of before is "the same"
# How many more commands and round trips per job than before are flagged: (share of before, and
# at least). Both include the worker's start-up, heartbeats and idle waits, spread over the
# jobs, and asyncio slots batch their claims (0.03-0.09 round trips per job), hence the floor.
# Commands are otherwise exact (an extra one per job is +5-10 %). A "round trip" is a server
# read event, and a 1 MB request takes several, as many as timing makes: +12 % on identical code.
COUNT_SLACK = {"cmds_per_job": (0.02, 0.02), "rts_per_job": (0.05, 0.02)}
# (metric, column title): shown as after - before.
DELTAS = (("redis_cpu_us", "Redis us/job"), ("cmds_per_job", "cmds/job"),
          ("rts_per_job", "RTs/job"), ("worker_cpu_us", "wkr us/job"), ("rss_mb", "RSS MB"))


def higher_is_better(row: Row) -> bool:
    """jobs/s rows: more is better; latency (ms) and idle (cmds/s) rows: less is."""
    return row.unit == "jobs/s"


def _pairs(rows: list[Row], code: Checkout) -> list[tuple[Row, Row]]:
    """(before, after) for every row of ours that has a twin on ``code``."""
    before = {(r.workload, r.system, r.unit): r for r in rows if r.system.startswith(code.name)}
    out = []
    for row in rows:
        if row.system.startswith("ours") and not row.system.startswith(code.name):
            twin = before.get((row.workload, code.name + row.system[4:], row.unit))
            if twin is not None:
                out.append((twin, row))
    return out


def _ratio(after: Optional[float], before: Optional[float]) -> Optional[float]:
    """after / before; 1 for 0 and 0 (an idle row with no command in either window)."""
    if after is None or before is None or (before == 0 and after != 0):
        return None
    return after / before if before else 1.0


def _verdict(after: Optional[float], before: Optional[float], up: bool) -> str:
    if after is None or before is None:
        return "not measured"
    if after == before:
        return "same"
    if before == 0 or after == 0:  # no ratio: the direction alone
        return "better" if (after > before) == up else "WORSE"
    gain = after / before if up else before / after
    if gain < 1 - TOLERANCE:
        return "WORSE"
    return "better" if gain > 1 + TOLERANCE else "same"


def _more(metric: str, before: Optional[float], delta: Optional[float]) -> bool:
    """Whether ``delta`` more ``metric`` per job than ``before`` is beyond the noise."""
    share, least = COUNT_SLACK[metric]
    return before is not None and delta is not None and delta > max(share * before, least)


def compare(rows: list[Row], code: Checkout) -> list[dict[str, Any]]:
    """One record per pair: both medians, after / before, the deltas and the flags."""
    out = []
    for old, new in _pairs(rows, code):
        a, b = new.median(), old.median()
        deltas = {m: new_m - old_m for m, _ in DELTAS
                  if (new_m := new.median(m)) is not None and (old_m := old.median(m)) is not None}
        verdict = _verdict(a, b, higher_is_better(new))
        flags = [verdict] if verdict in ("WORSE", "better") else []
        flags += [f"more {name}" for name, metric in (("commands", "cmds_per_job"),
                                                      ("round trips", "rts_per_job"))
                  if _more(metric, old.median(metric), deltas.get(metric))]
        out.append({"workload": new.workload, "system": new.system, "unit": new.unit,
                    "before": b, "after": a, "ratio": _ratio(a, b), "verdict": verdict,
                    "higher_is_better": higher_is_better(new), "delta": deltas,
                    "before_runs": old.samples.get("value", []),
                    "after_runs": new.samples.get("value", []),
                    "note": "; ".join(n for n in (old.note, new.note) if n), "flags": flags})
    return out


def _num(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed and value > 0 else ""
    if abs(value) >= 100:
        return f"{sign}{value:,.0f}"
    if signed and abs(value) < 0.005:
        return "0"
    return f"{sign}{value:.3g}"


def render(records: list[dict[str, Any]], code: Checkout) -> str:
    """The before / after table, a line per pair, and a summary line."""
    if not records:
        return ""
    width = max(34, *(len(r["system"]) for r in records))
    out = [f"Before and after: before = {code.name} ({code.ref} = {code.sha[:12]}), after = "
           "ours (this working tree); medians; after / before, and after - before per job",
           f"{'workload':8} {'system':{width}} {'unit':7} {'before':>9} {'after':>9} "
           f"{'after/before':>12}" + "".join(f"{title:>13}" for _, title in DELTAS) + "  flag"]
    for r in records:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        cells = "".join(f"{_num(r['delta'].get(m), True):>13}" for m, _ in DELTAS)
        flag = " ".join(r["flags"]) or ("ok" if r["verdict"] == "same" else r["verdict"])
        note = f"  ({r['note'][:120]})" if r["note"] else ""
        out.append(f"{r['workload']:8} {r['system']:{width}} {r['unit']:7} {_num(r['before']):>9} "
                   f"{_num(r['after']):>9} {ratio:>12}{cells}  {flag}{note}")
    measured = [r for r in records if r["verdict"] != "not measured"]
    bad = [f"{r['workload']} {r['system']}" for r in records if r["verdict"] == "not measured"
           or any(f == "WORSE" or f.startswith("more") for f in r["flags"])]
    count = {v: sum(r["verdict"] == v for r in measured) for v in ("same", "better", "WORSE")}
    spread = max((abs(r["ratio"] - 1) for r in measured if r["ratio"] is not None),
                 default=None)
    out.append(f"{count['same']} of {len(records)} rows within +-{TOLERANCE:.0%} of before, "
               f"{count['better']} better, {count['WORSE']} worse, "
               f"{len(records) - len(measured)} not measured"
               + (f"; largest |after/before - 1| {spread:.1%}" if spread is not None else "")
               + (f"; to look at: {', '.join(bad)}" if bad else ""))
    return "\n".join(out)
