"""Where every job ended up: lost, wrong and duplicated jobs, from the ledger and the failed lists.

A job's *final state* is read after the drain: its runs in the ledger (each with a start and,
unless it was cut short, an end) and its entries in ``resque:failed``. Per status and kind
(:class:`soakkit.ledger.Enqueued`):

* ``accepted``, expecting ``ok``: a run ended ``ok`` and there is no failure entry. A
  ``pyresqueworker.PoisonPill`` entry instead (held by killed workers ``--max-recoveries``
  times) is *quarantined*: reported, not lost. Anything else is *wrong*; no run ending ``ok``
  and no entry at all is *lost*.
* ``accepted``, expecting ``fail``: exactly one entry, a ``SoakError``, with ``"attempts"``
  equal to the runs the retry policy allows (none for a class without one), and no run ending
  ``ok``. No entry is *lost*; two entries, a wrong exception or count, or a success are *wrong*.
* A delayed kind must not start before its due second.
* ``deduped`` and ``refused``: no run and no entry, else *wrong*.
* ``uncertain``: either nothing at all, or what ``accepted`` requires.

A *duplicated* job started more runs than its kind calls for (1; ``fails`` + 1 for
``SoakFlaky``; 3 for ``SoakDoomed``). Each extra run must be explained by a *disrupted* run of
the same job: one with no recorded end, one whose worker process was killed while it ran (up to
:data:`GRACE` s after its end: the completion is written after the handler returns; a
``--fork-per-job`` child forked before the kill may even start after it), or, in
group ``b``, one that overlapped a failover (:data:`GRACE` s either side: writes a demoted
master took are gone). Extra runs beyond the disrupted ones are *unexplained*.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from soakkit.faults import Window
from soakkit.ledger import Enqueued, Run

__all__ = ["GRACE", "Accounting", "Failure", "account", "read_failures"]

GRACE = 2.0
EVIDENCE = 10  # wrong and unexplained jobs whose runs are shown (every lost one is)
POISON = "pyresqueworker.PoisonPill"


@dataclass(frozen=True)
class Failure:
    exception: str
    attempts: int


def read_failures(conn: redis.Redis) -> dict[str, list[Failure]]:
    """The entries of ``resque:failed`` by job id (the first argument of every soak job)."""
    found: dict[str, list[Failure]] = {}
    total = int(conn.llen("resque:failed"))
    for first in range(0, total, 2000):
        for raw in conn.lrange("resque:failed", first, first + 1999):
            entry: Any = json.loads(raw)
            payload = entry.get("payload") if isinstance(entry, dict) else None
            args = payload.get("args") if isinstance(payload, dict) else None
            if args:
                found.setdefault(str(args[0]), []).append(
                    Failure(str(entry.get("exception")), int(entry.get("attempts") or 0)))
    return found


@dataclass
class Accounting:
    jobs: Counter[str] = field(default_factory=Counter)  # status -> jobs
    lost: list[str] = field(default_factory=list)
    wrong: dict[str, str] = field(default_factory=dict)  # job id -> what was wrong
    quarantined: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)  # job id -> extra runs
    unexplained: dict[str, int] = field(default_factory=dict)  # job id -> extra not explained
    completed_twice: int = 0  # jobs whose extra runs also ran to their end
    runs: int = 0
    orphan_runs: int = 0  # runs of ids the enqueuer never recorded
    # What the ledger and the failed lists hold about a lost, wrong or unexplained job.
    evidence: dict[str, tuple[Enqueued, list[Run], list[Failure]]] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.jobs["accepted"]

    @property
    def duplicate_share(self) -> float:
        return len(self.duplicated) / max(1, self.accepted)


def _expected_runs(job: Enqueued) -> int:
    if job.expect == "fail":
        return max(1, job.attempts)
    return 1 + job.fails


def _disrupted(run: Run, kills: dict[int, float], failovers: Sequence[Window]) -> bool:
    if run.end is None:
        return True
    # Every run of a killed process began before the kill, or just after it in a
    # --fork-per-job child forked before it (an orphan that runs on): disrupted unless it
    # ended, completion written, GRACE s before the kill.
    killed = kills.get(run.pid)
    if killed is not None and run.end + GRACE >= killed:
        return True
    return any(run.start <= w.end + GRACE and run.end >= w.start - GRACE for w in failovers)


def _final_state(job: Enqueued, runs: list[Run], failures: list[Failure]) -> str:
    """``ok``, ``lost``, ``quarantined``, ``none`` (never existed) or what was wrong."""
    succeeded = any(r.outcome == "ok" for r in runs)
    if job.status in ("deduped", "refused"):
        return "ok" if not runs and not failures else f"{job.status} but ran"
    if job.status == "uncertain" and not runs and not failures:
        return "none"
    if job.due and runs and runs[0].start < job.due:
        return f"ran {job.due - runs[0].start:.2f} s before its due time"
    if any(f.exception == POISON for f in failures):
        return "quarantined"
    if job.expect == "ok":
        if failures:
            return f"failed with {failures[0].exception}"
        return "ok" if succeeded else "lost"
    if not failures:
        return "lost"
    if succeeded or len(failures) > 1:
        return f"{len(failures)} failure entries, succeeded={succeeded}"
    failure = failures[0]
    if not failure.exception.endswith("SoakError") or failure.attempts != job.attempts:
        return f"failure {failure.exception} attempts={failure.attempts} (want {job.attempts})"
    return "ok"


def account(expected: dict[str, Enqueued], runs: dict[str, list[Run]],
            failures: dict[str, list[Failure]], windows: Sequence[Window]) -> Accounting:
    kills = {w.victim.pid: w.start for w in windows if w.kind == "kill" and w.victim}
    failovers = [w for w in windows if w.kind == "failover"]
    acc = Accounting()
    acc.runs = sum(len(r) for r in runs.values())
    acc.orphan_runs = sum(len(r) for job_id, r in runs.items() if job_id not in expected)
    for job_id, job in expected.items():
        acc.jobs[job.status] += 1
        job_runs = runs.get(job_id, [])
        state = _final_state(job, job_runs, failures.get(job_id, []))
        if state == "lost":
            acc.lost.append(job_id)
        elif state == "quarantined":
            acc.quarantined.append(job_id)
        elif state not in ("ok", "none"):
            acc.wrong[job_id] = state
        if state == "lost" or (state not in ("ok", "none", "quarantined")
                               and len(acc.wrong) <= EVIDENCE):
            acc.evidence[job_id] = (job, job_runs, failures.get(job_id, []))
        extra = len(job_runs) - _expected_runs(job)
        if extra <= 0 or job.status in ("deduped", "refused"):
            continue
        acc.duplicated[job_id] = extra
        group_failovers = failovers if job.group == "b" else []
        disrupted = sum(1 for r in job_runs if _disrupted(r, kills, group_failovers))
        if extra > disrupted:
            acc.unexplained[job_id] = extra - disrupted
            if len(acc.unexplained) <= EVIDENCE:
                acc.evidence.setdefault(job_id, (job, job_runs, failures.get(job_id, [])))
        if sum(1 for r in job_runs if r.end is not None) > _expected_runs(job):
            acc.completed_twice += 1
    return acc
