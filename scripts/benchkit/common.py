"""The benchmark's shared vocabulary: settings, systems, rows (for ``scripts/bench.py``)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Optional

from benchkit import jobs as bj

__all__ = ["OPT_IN", "WORKLOADS", "BenchError", "Checkout", "Metrics", "Row", "Settings",
           "System"]

# The classic workloads, then issue 13's scale rows: what runs when --only is not given.
WORKLOADS = ("floor", "drain", "enqueue", "io", "latency",
             "payload", "ioscale", "logging", "idle")
# Run only when named in --only: issue 26's results and batches (two more drains and a
# 10,000-job batch: ~6 s more on --quick's ~35 s; and a --baseline older than issue 26 has no
# batches to time, and drains tracked jobs as plain ones).
OPT_IN = ("workflow",)
Metrics = dict[str, float]


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run."""

    runs: int = 3
    jobs: int = 20_000
    io_jobs: int = 2_000
    io_sleep: float = 0.05
    io_concurrency: int = 100
    latency_samples: int = 200
    peers: tuple[str, ...] = bj.PEERS
    only: tuple[str, ...] = WORKLOADS
    # (payload bytes, jobs): the payload drain.
    payloads: tuple[tuple[int, int], ...] = ((100, 20_000), (10_000, 5_000), (1_000_000, 300))
    # (concurrency C, jobs): I/O-bound jobs on the asyncio execution.
    io_scale: tuple[tuple[int, int], ...] = ((100, 5_000), (1_000, 5_000), (10_000, 20_000))
    # (processes, slots, queues, --interval): idle workers.
    idle: tuple[tuple[int, int, int, float], ...] = (
        (1, 1, 1, 1.0), (1, 1, 5, 1.0), (1, 8, 5, 1.0), (50, 8, 5, 1.0),
        (1, 8, 5, 5.0), (50, 8, 5, 5.0))
    io_connections: Optional[int] = None  # ours --connections K on the asyncio rows
    batch_jobs: int = 10_000  # the workflow workload's batch (its rows say how many)
    idle_window: float = 5.0  # seconds of counting (at least two idle intervals)
    pin: bool = True  # Redis on core 0, workers on core 1 (taskset)


@dataclass(frozen=True)
class Checkout:
    """Another version of this package, whose worker runs as a system of its own (``--baseline``).

    Only the worker subprocesses run it: the bench itself (its client, floors, enqueue calls and
    jobs file) is this checkout's, so both versions are measured by the same code.
    """

    name: str  # its rows' label prefix instead of "ours": "ours@<short sha>"
    root: str  # a directory holding that version's ``pyresqueworker`` package
    entry: str  # what its ``pyresque-work`` console script runs, "module:function"
    ref: str = ""  # the git revision asked for
    sha: str = ""  # ...and the commit it named


@dataclass(frozen=True)
class System:
    """One framework in one configuration (``None``: the framework's default)."""

    label: str
    framework: str
    concurrency: Optional[int] = None
    processes: int = 1
    poll: Optional[float] = None
    # Latency gaps are 10 ms + uniform [0, idle_cycle], so a polling worker is sampled at every
    # phase of its cycle; a fixed short gap would phase-lock with the poll and bias the result.
    idle_cycle: float = 0.02
    extra: tuple[str, ...] = ()  # more worker flags (ours: --history ...)
    queues: tuple[str, ...] = ()  # ours: the watched queues (default: the bench queue only)
    log_level: str = "warning"  # ours: --log-level
    checkout: Optional[Checkout] = None  # ours: run this version's worker (None: this checkout)


@dataclass
class Row:
    """One line of the table; ``samples`` holds one number per run for each metric."""

    workload: str
    system: str
    unit: str
    higher_is_better: bool = True
    samples: dict[str, list[float]] = field(default_factory=dict)
    top_commands: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def median(self, metric: str = "value") -> Optional[float]:
        values = self.samples.get(metric)
        return statistics.median(values) if values else None


class BenchError(RuntimeError):
    """A run that failed; its row shows the message instead of numbers."""
