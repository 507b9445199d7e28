"""The workflow verdict: batches, callbacks, chains and kept results, after the last drain.

:func:`judge` sets what each group's Redis holds at the end (:mod:`soakkit.wfread`) against
what was made (:mod:`soakkit.workflow`) and the ledger's runs:

* **Batches.** A batch that exists must be complete with each member as designed (a failing
  one ``failed``, the others ``succeeded``); its ``on_complete`` item must be queued exactly
  once, its ``on_success`` once if no member failed, never otherwise. No callback for a batch
  that is not complete or does not exist; a ``refused`` batch must not exist.
* **Chains.** A step's first start comes after the first successful end of the step it depends
  on; the steps after a step that failed are ``canceled`` and never start.
* **Results.** Every tracked job with a run that succeeded (in the ledger, or the Ruby worker's
  log) has its result, equal to the expected value; a job designed to succeed that never did
  is lost.

*Uncertain*, listed but not failed (as the enqueuer's rule): a write not confirmed (connection
lost mid-call, or in group ``b`` no replica acknowledged it) that is absent or left incomplete;
in group ``b`` a job whose runs overlapped a failover (``GRACE`` s either side: writes a demoted
master took are gone); a Ruby member never reported while the test worker had exited (it pops
with ``LPOP``). A job held by killed workers too often (``PoisonPill``) is *quarantined*. A
callback queued twice, or an early or canceled step that ran, always fails.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

from soakkit.accounting import GRACE, POISON, Failure
from soakkit.faults import Window
from soakkit.ledger import Run
from soakkit.ruby import RubyWorker
from soakkit.wfread import Seen
from soakkit.workflow import Made, Tracked

__all__ = ["Verdict", "judge"]

SHOWN = 8  # evidence lines per kind of finding


@dataclass
class Verdict:
    """What :func:`judge` found; :meth:`criteria` gives the report's rows."""

    ruby: str = ""
    batches: Counter[str] = field(default_factory=Counter)  # made/exists/completed/refused
    callbacks: Counter[str] = field(default_factory=Counter)  # expected/seen/rerun
    chains: Counter[str] = field(default_factory=Counter)  # made/checked
    results: Counter[str] = field(default_factory=Counter)  # checked
    wrong_batches: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # a success without its result
    wrong_results: list[str] = field(default_factory=list)
    never: list[str] = field(default_factory=list)  # designed to succeed, never did
    uncertain: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    def criteria(self) -> list[tuple[str, str, str, bool]]:
        b, c = self.batches, self.callbacks
        uncertain_batches = sum(1 for u in self.uncertain if u.startswith("batch"))
        uncertain_jobs = sum(1 for u in self.uncertain if not u.startswith(("batch", "chain")))
        return [
            ("workflow batches", f"{b['made']} made: {b['exists']} created ({b['refused']} "
             f"refused), {b['completed']} completed, {uncertain_batches} uncertain; "
             f"{len(self.wrong_batches)} wrong", "every confirmed batch completes as designed",
             not self.wrong_batches and b["completed"] > 0),
            ("batch callbacks", f"expected {c['expected']}, seen {c['seen']}; duplicated "
             f"{len(self.duplicated)}, missing {len(self.missing)}, unexpected "
             f"{len(self.unexpected)} ({c['rerun']} members ran again after a kill or "
             "failover)", "each exactly once",
             not (self.duplicated or self.missing or self.unexpected)),
            ("chains (depends_on)", f"{self.chains['checked']} of {self.chains['made']} "
             f"checked, {len(self.violations)} violations", "0 early or canceled runs",
             not self.violations and self.chains["checked"] > 0),
            ("kept results", f"{self.results['checked']} checked: {len(self.lost)} lost, "
             f"{len(self.wrong_results)} wrong, {len(self.never)} never succeeded; "
             f"{uncertain_jobs} uncertain, {len(self.quarantined)} "
             "quarantined", "0 lost, 0 wrong",
             not (self.lost or self.wrong_results or self.never) and self.results["checked"] > 0),
            ("Ruby members", self.ruby, "(information)", True),
        ]

    def summary(self) -> dict[str, object]:
        """For ``--json``: the counts and every finding."""
        return {"ruby": self.ruby, "batches": dict(self.batches),
                "callbacks": dict(self.callbacks), "chains": dict(self.chains),
                "results": dict(self.results),
                **{name: getattr(self, name) for name in (
                    "wrong_batches", "duplicated", "missing", "unexpected", "violations",
                    "lost", "wrong_results", "never", "uncertain", "quarantined")}}

    def lines(self) -> list[str]:
        out = []
        for label, found in (("WORKFLOW WRONG BATCH", self.wrong_batches),
                             ("DUPLICATE CALLBACK", self.duplicated),
                             ("MISSING CALLBACK", self.missing),
                             ("UNEXPECTED CALLBACK", self.unexpected),
                             ("CHAIN VIOLATION", self.violations),
                             ("RESULT LOST", self.lost), ("RESULT WRONG", self.wrong_results),
                             ("NEVER SUCCEEDED", self.never), ("uncertain", self.uncertain),
                             ("quarantined", self.quarantined)):
            out += [f"  {label} {what}" for what in found[:SHOWN]]
            if len(found) > SHOWN:
                out.append(f"  {label}: {len(found) - SHOWN} more")
        return out


@dataclass
class _Judge:
    seen: dict[str, Seen]
    runs: dict[str, list[Run]]
    failures: dict[str, list[Failure]]
    failovers: list[Window]
    ruby_exits: int
    t0: float  # the fault phase's start: evidence times count from it
    verdict: Verdict = field(default_factory=Verdict)

    def told(self, job_id: str) -> str:
        """A job's runs, for evidence."""
        def at(moment: Optional[float]) -> str:
            return "?" if moment is None else f"{moment - self.t0:.2f}"

        return "; ".join(f"run {at(r.start)}..{at(r.end)} {r.outcome or 'no end'} "
                         f"{r.worker_id}" for r in self.runs.get(job_id, [])) or "no run"

    def uncertain(self, made: Made, job: Tracked) -> str:
        """Why ``job``'s missing end may be Redis's or the test worker's doing ("": none)."""
        if made.status == "uncertain":
            return "its write was not confirmed"
        runs = self.runs.get(job.job_id, [])
        if made.group == "b" and any(
                r.start <= w.end + GRACE and (r.end or r.start) >= w.start - GRACE
                for r in runs for w in self.failovers):
            return "it ran across a failover"
        if job.ruby and not self.seen[made.group].ruby_runs.get(job.job_id) and self.ruby_exits:
            return "the Ruby test worker (LPOP, no recovery) exited meanwhile"
        return ""

    def quarantined(self, job_id: str) -> bool:
        return any(f.exception == POISON for f in self.failures.get(job_id, []))

    def succeeded(self, made: Made, job: Tracked) -> bool:
        if job.ruby:
            return "succeeded" in self.seen[made.group].ruby_runs.get(job.job_id, [])
        return any(r.outcome == "ok" for r in self.runs.get(job.job_id, []))


def judge(made: Iterable[Made], seen: dict[str, Seen], runs: dict[str, list[Run]],
          failures: dict[str, list[Failure]], windows: Sequence[Window],
          ruby: Optional[RubyWorker], t0: float) -> Verdict:
    j = _Judge(seen, runs, failures, [w for w in windows if w.kind == "failover"],
               len(ruby.exits) if ruby is not None else 0, t0)
    ruby_jobs = 0
    for m in made:
        if m.kind == "batch":
            _batch(j, m)
        elif m.kind == "chain":
            _chain(j, m)
        _results(j, m)
        ruby_jobs += sum(1 for job in m.jobs if job.ruby and m.status != "refused")
    v = j.verdict
    for group, left in seen.items():  # callbacks of no batch the soak made
        v.unexpected += [f"{kind} of {token} (group {group}): {n} items"
                         for (kind, token), n in left.callbacks.items()]
    if ruby is None or not ruby.running:
        v.ruby = "skipped: " + (ruby.skipped if ruby is not None else "not started")
    else:
        ran = sum(len(s.ruby_runs) for s in seen.values())
        v.ruby = (f"{ran} of {ruby_jobs} Ruby members ran (tracking_worker.rb); worker exits "
                  f"{j.ruby_exits}")
    return v


def _batch(j: _Judge, m: Made) -> None:
    v, seen = j.verdict, j.seen[m.group]
    status = seen.batches.get(m.batch_id)
    done = {kind: seen.callbacks.pop((kind, m.token), 0) for kind in ("success", "complete")}
    v.batches["made"] += 1
    v.duplicated += [f"{kind} of {m.token}: {n} items" for kind, n in done.items() if n > 1]
    if m.status == "refused" or status is None:
        v.batches["refused"] += m.status == "refused"
        if status is not None:
            v.wrong_batches.append(f"{m.token}: refused, yet it exists")
        elif m.status == "uncertain":
            v.uncertain.append(f"batch {m.token}: absent (its write was not confirmed)")
        elif m.status != "refused":
            v.wrong_batches.append(f"{m.token}: accepted, yet absent")
        v.unexpected += [f"{kind} of absent {m.token}" for kind, n in done.items() if n]
        return
    v.batches["exists"] += 1
    if not status.complete:
        pending = [job for job in m.jobs if status.jobs.get(job.job_id) == "pending"]
        reasons = [j.uncertain(m, job) for job in pending]
        what = (f"{m.token}: incomplete, {len(pending)} pending: "
                + ", ".join(f"{job.job_id} ({job.cls}; {j.told(job.job_id)})"
                            for job in pending[:3]))
        if pending and all(reasons):
            v.uncertain.append(f"batch {what} - {reasons[0]}")
        else:
            v.wrong_batches.append(what)
        v.unexpected += [f"{kind} of incomplete {m.token}" for kind, n in done.items() if n]
        return
    v.batches["completed"] += 1
    want = {"complete": 1, "success": int(status.failed == 0)}
    v.callbacks["expected"] += sum(want.values())
    v.callbacks["seen"] += sum(done.values())
    v.missing += [f"{kind} of {m.token}" for kind in want if want[kind] and not done[kind]]
    v.unexpected += [f"{kind} of {m.token} (failed {status.failed})"
                     for kind in want if done[kind] and not want[kind]]
    for job in m.jobs:
        v.callbacks["rerun"] += len(j.runs.get(job.job_id, [])) > 1 + (job.design == "flaky")
        design = "failed" if job.design == "fail" else "succeeded"
        got = status.jobs.get(job.job_id)
        if got != design and j.quarantined(job.job_id):
            j.verdict.quarantined.append(f"{job.job_id} of batch {m.token}")
        elif got != design:
            v.wrong_batches.append(f"{m.token}: {job.job_id} ({job.cls}) {got}, designed "
                                   f"{design}; {j.told(job.job_id)}")
    if status.total != len(m.jobs):
        v.wrong_batches.append(f"{m.token}: total {status.total}, made {len(m.jobs)}")


def _chain(j: _Judge, m: Made) -> None:
    v = j.verdict
    v.chains["made"] += 1
    steps = [job.job_id for job in m.jobs]
    for before, after in zip(steps, steps[1:]):
        starts = [r.start for r in j.runs.get(after, [])]
        if not starts:
            continue
        ends = [r.end for r in j.runs.get(before, []) if r.outcome == "ok" and r.end]
        if not ends or min(ends) >= min(starts):
            v.violations.append(f"{m.token}: {after} started at {min(starts) - j.t0:.3f} s,"
                                f" before {before} first succeeded "
                                f"({'never' if not ends else f'{min(ends) - j.t0:.3f} s'})")
    if m.status == "refused":
        v.violations += [f"{m.token}: refused, yet {s} ran" for s in steps if j.runs.get(s)]
        return
    if not all(j.seen[m.group].records.get(s) for s in steps):
        if m.status == "uncertain" and not any(j.runs.get(s) for s in steps):
            v.uncertain.append(f"chain {m.token}: absent (its write was not confirmed)")
            return
        v.violations.append(f"{m.token}: {m.status}, yet steps are missing: "
                            + ", ".join(s for s in steps if not j.seen[m.group].records.get(s)))
    if m.failing:
        for index, job in enumerate(m.jobs):
            want = "failed" if index == 0 else "canceled"
            if index and j.runs.get(job.job_id):
                v.violations.append(f"{m.token}: {job.job_id} ran though step 1 failed; "
                                    f"{j.told(job.job_id)}")
            api = j.seen[m.group].api.get(job.job_id)
            if api != want and not (api == "unknown" and m.status == "uncertain"):
                v.violations.append(f"{m.token}: {job.job_id} is {api}, not {want}")
    v.chains["checked"] += 1


def _results(j: _Judge, m: Made) -> None:
    v, seen = j.verdict, j.seen[m.group]
    if m.status == "refused":
        v.wrong_results += [f"{job.job_id} ({m.kind} {m.token}): refused, yet "
                            f"{seen.records.get(job.job_id, {}).get('state', 'it ran')}"
                            for job in m.jobs
                            if j.runs.get(job.job_id) or seen.records.get(job.job_id)]
        return
    for index, job in enumerate(m.jobs):
        record = seen.records.get(job.job_id, {})
        value = json.loads(record["result"]) if "result" in record else None
        api = seen.api.get(job.job_id)
        if j.succeeded(m, job):
            v.results["checked"] += 1
            if job.design == "fail":
                v.wrong_results.append(f"{job.job_id} ({job.cls}) succeeded, designed to fail")
            elif record.get("state") == "succeeded" and value == job.expect and (
                    api is None or api == "ok " + json.dumps(job.expect)):
                continue
            elif record.get("state") == "succeeded":
                v.wrong_results.append(f"{job.job_id}: {value!r} / API {api!r}, want "
                                       f"{job.expect!r}")
                continue
        elif job.design == "fail" or (m.kind == "chain" and m.failing and index > 0):
            continue  # its failure or cancellation: see the batch and chain checks
        elif m.status == "uncertain" and not record and not j.runs.get(job.job_id):
            continue  # an unconfirmed write that left nothing: the job never existed
        why = j.uncertain(m, job)
        what = (f"{job.job_id} ({job.cls}, {m.kind} {m.token}): record "
                f"{record.get('state', 'absent')}; {j.told(job.job_id)}")
        if j.quarantined(job.job_id):
            v.quarantined.append(what)
        elif why:
            v.uncertain.append(f"{what} - {why}")
        elif j.succeeded(m, job):
            v.lost.append(what)
        else:
            v.never.append(what)
