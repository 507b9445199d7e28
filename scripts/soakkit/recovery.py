"""How soon every slot claimed again after each fault, from the run starts in the ledger.

A slot is a Resque worker id (``host:pid-N:queues``); a run's start is the moment its handler
began, just after the claim (the load keeps a backlog, so a slot that can claim does). For a
fault of group ``g`` healed at ``end`` (a kill: the moment of the kill):

* every slot of ``g`` that started a run in the :data:`ACTIVE` s before the fault began, and
  whose process was neither the victim nor killed before ``end`` + :data:`LIMIT`, must start
  its next run within :data:`LIMIT` s of ``end``;
* after a kill, the process that replaces the victim (the soak starts it at once; a supervisor
  restarts its child) must have every one of its slots start a run within :data:`LIMIT` s of
  the kill.

A fault's *resume* time is the longest of those waits.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from soakkit.faults import Window
from soakkit.fleet import Seen
from soakkit.ledger import Run

__all__ = ["ACTIVE", "LIMIT", "Resume", "resume_times"]

LIMIT = 5.0
ACTIVE = 10.0


@dataclass(frozen=True)
class Resume:
    window: Window
    seconds: float  # the longest wait; inf when a slot never claimed again
    slots: int  # slots checked
    late: tuple[str, ...]  # slots that waited longer than LIMIT: "worker id (last, next)"
    slowest: str = ""  # the slot that waited longest


def _group_of(worker_id: str) -> str:
    queues = worker_id.rsplit(":", 1)[-1]
    return "b" if "soak_b" in queues else "a"


def resume_times(windows: Sequence[Window], runs: Iterable[Run],
                 seen: dict[int, Seen]) -> list[Resume]:
    starts: dict[str, list[float]] = {}
    for run in runs:
        starts.setdefault(run.worker_id, []).append(run.start)
    for series in starts.values():
        series.sort()
    return [_resume(w, starts, seen) for w in windows if not w.error]


def _next_start(series: list[float], after: float) -> float:
    index = bisect.bisect_left(series, after)
    return series[index] if index < len(series) else math.inf


def _resume(window: Window, starts: dict[str, list[float]], seen: dict[int, Seen]) -> Resume:
    end = window.end
    victim = window.victim.pid if window.victim else None
    waits: dict[str, float] = {}
    for worker_id, series in starts.items():
        pid = int(worker_id.split(":")[1].split("-")[0])
        if _group_of(worker_id) != window.group or pid == victim:
            continue
        if _next_start(series, window.start - ACTIVE) >= window.start:
            continue  # not active just before the fault (gone earlier, or started later)
        killed = seen[pid].killed_at if pid in seen else None
        if killed is not None and killed <= end + LIMIT:
            continue
        waits[worker_id] = _next_start(series, end) - end
    if window.victim is not None:
        waits.update(_replacement_waits(window.victim, end, starts, seen))
    late = tuple(sorted(f"{w} (last start {_before(starts.get(w, []), window.start)}, "
                        f"next {s:.2f} s after the end)" for w, s in waits.items() if s > LIMIT))
    slowest = max(waits, key=lambda w: waits[w], default="")
    return Resume(window, waits.get(slowest, 0.0), len(waits), late, slowest)


def _before(series: list[float], moment: float) -> str:
    index = bisect.bisect_left(series, moment)
    return f"{moment - series[index - 1]:.2f} s before the fault" if index else "none"


def _replacement_waits(victim: Seen, killed: float, starts: dict[str, list[float]],
                       seen: dict[int, Seen]) -> dict[str, float]:
    """Waits of every slot of the process that replaced ``victim`` (inf for a missing one)."""
    later = sorted((s for s in seen.values() if s.config.name == victim.config.name
                    and s.role == "worker" and s.pid != victim.pid
                    and s.first_seen >= killed - 0.05), key=lambda s: s.first_seen)
    if not later:
        return {f"replacement of {victim.pid}": math.inf}
    pid = later[0].pid
    firsts = {w: s[0] for w, s in starts.items() if w.split(":")[1].split("-")[0] == str(pid)}
    waits = {w: first - killed for w, first in firsts.items()}
    for missing in range(victim.config.slots - len(waits)):
        waits[f"slot {missing} of replacement {pid}"] = math.inf
    return waits
