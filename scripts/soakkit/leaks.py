"""No leak: worker memory and Redis keys, after warm-up against the end.

**Memory.** A worker process's RSS may grow at most :data:`RSS_GROWTH` after warm-up:

* a process that lived through the whole fault phase is compared idle to idle: its RSS at the
  baseline (after the warm-up load drained) against its RSS at the end (after the last drain);
* any other process (one killed, or a replacement started during the fault phase) is
  compared peak to peak: the largest RSS in the 10 s after its own warm-up (the warm-up, at
  least :data:`OWN_WARM_UP`) against the largest in its last 10 s, if it lived
  :data:`OWN_WARM_UP` more; a shorter-lived one is not judged (it never warmed up).

**Keys.** Each Redis's keys are counted by pattern (:func:`soakkit.monitor.key_pattern`) at the
baseline and at the end, both with nothing queued, held or scheduled:

* :data:`DRAINED` patterns (queues, the delayed queue, unique locks, retry counters) and the
  keys that hold a running job (``worker:<id>``) must be gone;
* a per-worker pattern (it names a worker id) may have at most one key per live slot, and the
  ``workers`` set and the heartbeat hash must list exactly the live slots;
* :data:`GROWS` patterns may grow, each for the reason given there; those that must expire
  must carry a TTL;
* every other pattern must have no more keys than at the baseline (a new pattern is a leak).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from soakkit.fleet import Seen
from soakkit.monitor import Census

__all__ = ["DRAINED", "GROWS", "RSS_GROWTH", "KeyProblem", "RssVerdict", "changed_patterns",
           "key_problems", "rss_verdicts"]

RSS_GROWTH = 0.10
# A process started during the fault phase never had the warm-up's dense 1 MB jobs: it is
# judged only after a minute of its own, and only if it then lived another minute.
OWN_WARM_UP = 60.0
DRAINED = ("resque:queue:", "resque:delayed:", "resque:timestamps:",
           "resque:delayed_queue_schedule", "resque:pyresque:unique:", "resque:resque-retry:",
           "resque:pyresque:raw:", "resque:pyresque:running-capped")
# prefix -> (must it carry a TTL, why it may grow)
GROWS: dict[str, tuple[bool, str]] = {
    "resque:failed": (False, "the failed list: the failing kinds add to it"),
    "resque:stat:processed": (False, "Resque's totals"),
    "resque:stat:failed": (False, "Resque's totals"),
    "resque:failure-resque-retry:": (True, "last failure of a retried job, kept 60 s"),
    "resque:pyresque:recoveries": (True, "jobs recovered from killed workers, kept a while"),
    "resque:pyresque:history": (False, "job history, capped by --history-max and retention"),
    "resque:pyresque:series:": (False, "the dashboard's time series, one point a minute"),
    # The workflow load's (soakkit.workflow): kept results, finished records, batches.
    "resque:pyresque:job:": (True, "tracked jobs' records and results, kept an hour or a day"),
    "resque:pyresque:done:": (True, "tracked jobs' end markers, kept with their records"),
    "resque:pyresque:batch:": (True, "batches and their members, kept a day after completing"),
    "resque:pyresque:batches": (False, "the batches by creation time, pruned when listed"),
    "resque:pyresque:dependents:": (True, "waiting dependents (wfcheck fails a step left "
                                    "waiting)"),
}


@dataclass(frozen=True)
class RssVerdict:
    seen: Seen
    basis: str  # "whole run" or "own warm-up"
    base_kb: int
    end_kb: int

    @property
    def growth(self) -> float:
        return self.end_kb / max(1, self.base_kb) - 1


def rss_verdicts(samples: dict[int, list[tuple[float, int]]], seen: dict[int, Seen],
                 baseline: float, end: float, warm: float) -> list[RssVerdict]:
    verdicts = []
    for pid, series in samples.items():
        if pid not in seen or not series:
            continue
        proc = seen[pid]
        after = [kb for at, kb in series if at >= baseline]
        if proc.first_seen <= baseline and proc.killed_at is None and after:
            if series[-1][0] >= end - 5:
                verdicts.append(RssVerdict(proc, "whole run", after[0], series[-1][1]))
            continue
        own_warm = max(warm, OWN_WARM_UP)
        warmed = proc.first_seen + own_warm
        if series[-1][0] - warmed < OWN_WARM_UP:
            continue
        early = [kb for at, kb in series if warmed <= at <= warmed + 10]
        late = [kb for at, kb in series if at >= series[-1][0] - 10]
        if early and late:
            verdicts.append(RssVerdict(proc, "own warm-up", max(early), max(late)))
    return verdicts


@dataclass(frozen=True)
class KeyProblem:
    group: str
    pattern: str
    baseline: int
    end: int
    why: str


def _grows(pattern: str) -> tuple[bool, str] | None:
    return next((v for prefix, v in GROWS.items() if pattern.startswith(prefix)), None)


def key_problems(group: str, base: Census, end: Census, live_slots: int) -> list[KeyProblem]:
    problems = []

    def problem(pattern: str, why: str) -> None:
        problems.append(KeyProblem(group, pattern, base.counts[pattern], end.counts[pattern],
                                   why))

    for pattern, count in sorted(end.counts.items()):
        grows = _grows(pattern)
        held = pattern.startswith("resque:worker:") and not pattern.endswith(":started")
        if pattern.startswith(DRAINED) or held:
            problem(pattern, "left after the drain")
        elif "<host>:<n>" in pattern:
            if count > live_slots:
                problem(pattern, f"more keys than the {live_slots} live slots")
        elif grows is not None:
            if grows[0] and end.no_ttl[pattern]:
                problem(pattern, f"{end.no_ttl[pattern]} keys without a TTL")
        elif count > base.counts[pattern]:
            problem(pattern, "more keys than at the baseline")
    for name, count in (("resque:workers (members)", end.workers),
                        ("resque:workers:heartbeat (fields)", end.heartbeats)):
        if count != live_slots:
            problems.append(KeyProblem(group, name, 0, count, f"{live_slots} live slots"))
    if end.running_capped:
        problems.append(KeyProblem(group, "resque:pyresque:running-capped (fields)", 0,
                                   end.running_capped, "capped jobs still marked running"))
    return problems


def changed_patterns(base: Census, end: Census) -> Sequence[tuple[str, int, int]]:
    """(pattern, baseline, end) for every pattern whose count changed, for the report."""
    patterns = sorted(set(base.counts) | set(end.counts))
    return [(p, base.counts[p], end.counts[p]) for p in patterns
            if base.counts[p] != end.counts[p]]
