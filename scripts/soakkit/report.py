"""The soak's tables (Markdown, so a run can be pasted into docs/reliability.md) and verdict."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from soakkit.accounting import Accounting
from soakkit.faults import Window
from soakkit.fleet import Seen
from soakkit.leaks import RSS_GROWTH, KeyProblem, RssVerdict, changed_patterns
from soakkit.monitor import Census
from soakkit.recovery import LIMIT, Resume
from soakkit.wfcheck import Verdict

__all__ = ["Result", "render"]

DUPLICATE_SHARE = 0.001


@dataclass
class Result:
    """Everything a soak measured; :meth:`criteria` turns it into pass or fail."""

    seed: int
    seconds: float
    warm: float
    wall: float
    drain: dict[str, float]  # phase -> seconds the drain took (inf: missed its deadline)
    kinds: Counter[tuple[str, str]]
    accounting: Accounting
    windows: Sequence[Window]
    resumes: Sequence[Resume]
    rss: Sequence[RssVerdict]
    key_problems: Sequence[KeyProblem]
    censuses: dict[str, tuple[Census, Census]]
    exits: dict[str, object] = field(default_factory=dict)
    log_signs: Counter[str] = field(default_factory=Counter)
    t0: float = 0.0  # when the fault phase began (epoch): the table's times count from it
    load_errors: Counter[str] = field(default_factory=Counter)  # Redis errors of the enqueuers
    load_bugs: Sequence[str] = ()  # anything else the enqueuers raised
    rss_series: dict[int, tuple[Seen, list[tuple[float, int]]]] = field(default_factory=dict)
    workflow: Optional[Verdict] = None  # the workflow load's checks (soakkit.wfcheck)

    def criteria(self) -> list[tuple[str, str, str, bool]]:
        """(criterion, measured, limit, met) rows."""
        acc = self.accounting
        slowest = max(self.resumes, key=lambda r: r.seconds, default=None)
        worst = max(self.rss, key=lambda v: v.growth, default=None)
        failed_faults = [w for w in self.windows if w.error]
        drains = ", ".join(f"{k} {v:.1f} s" for k, v in self.drain.items())
        rows = [
            ("jobs lost", f"{len(acc.lost)} (wrong outcome {len(acc.wrong)}, quarantined "
             f"{len(acc.quarantined)})", "0 lost, 0 wrong", not acc.lost and not acc.wrong),
            ("jobs run twice", f"{len(acc.duplicated)} of {acc.accepted:,} "
             f"({acc.duplicate_share:.3%}), unexplained {len(acc.unexplained)}",
             f"<= {DUPLICATE_SHARE:.1%}, each after a kill or failover",
             acc.duplicate_share <= DUPLICATE_SHARE and not acc.unexplained),
            ("slowest claim after a fault",
             "no fault" if slowest is None else
             f"{_seconds(slowest.seconds)} ({slowest.window.kind} {slowest.window.detail})",
             f"<= {LIMIT:.0f} s, every slot", all(r.seconds <= LIMIT for r in self.resumes)),
            ("worker RSS growth after warm-up",
             "no process judged" if worst is None else
             f"{worst.growth:+.1%} ({worst.seen.config.name} pid {worst.seen.pid}); "
             f"{len(self.rss)} processes judged",
             f"<= {RSS_GROWTH:.0%}", worst is not None and worst.growth <= RSS_GROWTH),
            ("Redis keys back to baseline", f"{len(self.key_problems)} patterns off",
             "0", not self.key_problems),
            ("faults applied", f"{len(self.windows) - len(failed_faults)} of "
             f"{len(self.windows)}; kinds {len({w.kind for w in self.windows})}",
             "all", not failed_faults and bool(self.windows)),
            ("drained", drains, "within the deadline",
             all(math.isfinite(v) for v in self.drain.values())),
            ("enqueuers", f"{len(self.load_bugs)} unexpected errors", "0", not self.load_bugs),
        ]
        if self.workflow is not None:
            rows += self.workflow.criteria()
        return [(n, m, lim, ok) for n, m, lim, ok in rows]

    @property
    def passed(self) -> bool:
        return all(ok for *_, ok in self.criteria())

    def to_json(self) -> dict[str, Any]:
        """The results for ``--json``: criteria, faults, RSS series (times from the fault
        phase's start), key counts."""
        acc = self.accounting
        return {
            "seed": self.seed, "seconds": self.seconds, "warm_up": self.warm,
            "passed": self.passed,
            "criteria": [dict(zip(("criterion", "measured", "limit", "ok"), row))
                         for row in self.criteria()],
            "jobs": dict(acc.jobs), "runs": acc.runs, "lost": acc.lost, "wrong": acc.wrong,
            "duplicated": acc.duplicated, "unexplained": acc.unexplained,
            "faults": [{"at": r.window.start - self.t0, "kind": r.window.kind,
                        "group": r.window.group, "detail": r.window.detail,
                        "seconds": r.window.seconds, "resume": r.seconds, "slots": r.slots,
                        "slowest": r.slowest}
                       for r in self.resumes],
            "rss": [{"config": seen.config.name, "role": seen.role, "pid": pid,
                     "samples": [(round(at - self.t0, 1), kb) for at, kb in series]}
                    for pid, (seen, series) in self.rss_series.items()],
            "keys": {g: {"baseline": dict(b.counts), "end": dict(e.counts)}
                     for g, (b, e) in self.censuses.items()},
            "workflow": None if self.workflow is None else self.workflow.summary(),
        }


def _at(moment: float | None, t0: float) -> str:
    return "?" if moment is None else f"{moment - t0:.2f}"


def _seconds(value: float) -> str:
    return "never" if not math.isfinite(value) else f"{value:.2f} s"


def _by_kind(resumes: Sequence[Resume]) -> list[tuple[str, int, str, str]]:
    """One row per fault kind: how often, the longest, the slowest resume after one."""
    rows = []
    for kind in dict.fromkeys(r.window.kind for r in resumes):
        mine = [r for r in resumes if r.window.kind == kind]
        rows.append((kind, len(mine), f"{max(r.window.seconds for r in mine):.1f} s",
                     _seconds(max(r.seconds for r in mine))))
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render(result: Result) -> str:
    acc = result.accounting
    statuses = ", ".join(f"{s} {n:,}" for s, n in sorted(acc.jobs.items()))
    per_kind = Counter[str]()
    for (kind, status), count in result.kinds.items():
        if status == "accepted":
            per_kind[kind] += count
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(per_kind.items()))
    parts = [
        f"== soak: seed {result.seed}, {result.seconds:.0f} s of load (warm-up "
        f"{result.warm:.0f} s), {result.wall:.0f} s in all",
        f"jobs: {statuses}; runs {acc.runs:,}; completed twice {acc.completed_twice}",
        f"accepted by kind: {kinds}",
        "",
        _table(("at", "fault", "group", "detail", "length", "resume", "slots checked"),
               [(f"{r.window.start - result.t0:.0f} s", r.window.kind, r.window.group,
                 r.window.detail, f"{r.window.seconds:.1f} s", _seconds(r.seconds), r.slots)
                for r in result.resumes]
               + [(f"{w.start - result.t0:.0f} s", w.kind, w.group, f"ERROR {w.error}", "",
                   "", "") for w in result.windows if w.error]),
        "",
        _table(("fault", "times", "longest", "slowest resume"), _by_kind(result.resumes)),
        "",
        _table(("worker process", "basis", "RSS after warm-up", "RSS at end", "growth"),
               [(f"{v.seen.config.name} {v.seen.role} {v.seen.pid}", v.basis,
                 f"{v.base_kb / 1024:.1f} MB", f"{v.end_kb / 1024:.1f} MB", f"{v.growth:+.1%}")
                for v in sorted(result.rss, key=lambda v: v.seen.config.name)]),
        "",
    ]
    for group, (base, end) in result.censuses.items():
        changed = changed_patterns(base, end)
        parts.append(f"keys of group {group}: {sum(base.counts.values())} at the baseline, "
                     f"{sum(end.counts.values())} at the end; patterns that changed: "
                     + (", ".join(f"{p} {b}->{e}" for p, b, e in changed) or "none"))
    for problem in result.key_problems:
        parts.append(f"  KEY PROBLEM {problem.group} {problem.pattern}: {problem.baseline} -> "
                     f"{problem.end} ({problem.why})")
    for job_id, what in list(acc.wrong.items())[:10]:
        parts.append(f"  WRONG {job_id}: {what}")
    if acc.lost:
        parts.append(f"  LOST {len(acc.lost)}: {', '.join(acc.lost[:10])}")
    for job_id, extra in list(acc.unexplained.items())[:10]:
        parts.append(f"  UNEXPLAINED DUPLICATE {job_id}: {extra} extra run(s)")
    for job_id, (job, runs, failures) in sorted(acc.evidence.items(),
                                                key=lambda item: item[0] not in acc.lost):
        told = "; ".join(f"run {r.start - result.t0:.2f}..{_at(r.end, result.t0)} "
                         f"{r.outcome or 'no end'} {r.worker_id}" for r in runs)
        parts.append(f"  EVIDENCE {job_id}: {job.kind} {job.status} enqueued "
                     f"{job.at - result.t0:.2f}; {told or 'no run'}; failures "
                     f"{[(f.exception, f.attempts) for f in failures]}")
    for resume in result.resumes:
        if LIMIT / 2 < resume.seconds <= LIMIT:
            parts.append(f"  SLOW after {resume.window.kind} {resume.window.detail}: "
                         f"{resume.slowest} {resume.seconds:.2f} s")
        if resume.late:
            parts.append(f"  LATE after {resume.window.kind} {resume.window.detail}: "
                         f"{', '.join(resume.late[:6])}")
    if result.load_errors:
        parts.append("enqueuer errors (under faults): " + ", ".join(
            f"{k} x{n}" for k, n in sorted(result.load_errors.items())))
    for bug in result.load_bugs[:5]:
        parts.append(f"  ENQUEUER ERROR {bug}")
    if result.workflow is not None:
        parts += result.workflow.lines()
    if result.log_signs:
        parts.append("worker logs: " + ", ".join(f"{k!r} x{n}"
                                                 for k, n in result.log_signs.items()))
    parts.append(f"worker exit codes at the end: {result.exits}")
    parts += ["", _table(("criterion", "measured", "limit", ""),
                         [(n, m, lim, "ok" if ok else "FAIL")
                          for n, m, lim, ok in result.criteria()]),
              "", f"== soak {'PASSED' if result.passed else 'FAILED'}"]
    return "\n".join(parts)
