"""The dashboard's charts from what Redis holds: the workers' time series and the job history.

Jobs per minute and per day come from the counter samples (plus the counters read now, so the
current minute and day are live); queue depth and latency from the samples as taken; duration
percentiles per class from the history records of the period, when workers keep history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Optional

from ..client.history import History, HistoryRecord
from ..worker.timeseries import DAY, MINUTE, Sample, SeriesStore, bucket_counts
from .charts import HEIGHT, WIDTH, Chart, bar_chart, line_chart, range_chart

__all__ = ["HOURS", "charts_page", "durations_chart", "jobs_chart", "queue_charts"]

HOURS = (1, 3, 6, 24)  # the periods the charts page offers
MAX_BARS = 180  # longer periods put several minutes in a bar
MAX_LINES = 6  # queues drawn per chart
MAX_CLASSES = 12  # classes in the durations chart
CLASSES_READ = 200  # classes whose records are read (the slowest MAX_CLASSES are drawn)
RECORDS_PER_CLASS = 500  # newest history records read per class
PERCENTILES = (50, 95, 99)


def step_for(hours: int) -> int:
    """Seconds per bar for a period of ``hours``: a minute, or more above three hours."""
    return MINUTE * max(1, math.ceil(hours * 60 / MAX_BARS))


def clock(epoch: int) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%H:%M")


def utc_day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")


def _period(hours: int) -> str:
    return "the last hour" if hours == 1 else f"the last {hours} hours"


def _starts(now: float, hours: int, step: int) -> list[int]:
    last = int(now // step) * step
    return list(range(last - (hours * 3600 // step - 1) * step, last + 1, step))


def jobs_chart(store: SeriesStore, now: float, hours: int,
               samples: Optional[Sequence[Sample]] = None, wide: bool = False) -> Chart:
    """Processed and failed jobs per bar over the last ``hours``, the current bar live
    (``wide``: drawn for the whole width of the page)."""
    step = step_for(hours)
    starts = _starts(now, hours, step)
    if samples is None:
        samples = store.minutes(starts[0] - step)
    buckets = bucket_counts([*samples, store.live(now)], step, starts[0], starts[-1])
    title = "Jobs per minute" if step == MINUTE else f"Jobs per {step // MINUTE} minutes"
    return bar_chart("chart-jobs", title, starts, [
        ("processed", "processed", [b.processed for b in buckets]),
        ("failed", "failed", [b.failed for b in buckets]),
    ], clock, _period(hours), (1200, 170) if wide else (WIDTH, HEIGHT))


def days_chart(store: SeriesStore, now: float) -> Chart:
    """Processed and failed jobs per UTC day, from the first stored day to today."""
    samples = store.days()
    today = int(now // DAY) * DAY
    first = int(samples[0].at // DAY) * DAY if samples else today
    starts = list(range(max(first, today - 55 * DAY), today + 1, DAY))
    buckets = bucket_counts([*samples, store.live(now)], DAY, starts[0], starts[-1])
    return bar_chart("chart-days", "Jobs per day (UTC)", starts, [
        ("processed", "processed", [b.processed for b in buckets]),
        ("failed", "failed", [b.failed for b in buckets]),
    ], utc_day, f"{len(starts)} day{'s' if len(starts) > 1 else ''}")


def queue_charts(samples: Sequence[Sample], now: float, hours: int) -> tuple[Chart, Chart]:
    """Queue depth and queue latency over the last ``hours``: the latest sample of each bar,
    for the queues that were deepest (or waited longest)."""
    step = step_for(hours)
    starts = _starts(now, hours, step)
    by_bar = {int(s.at // step) * step: s for s in sorted(samples, key=lambda s: s.at)}
    shown = [by_bar.get(start) for start in starts]

    def pick(index: int) -> list[tuple[str, list[Optional[float]]]]:
        values: dict[str, list[Optional[float]]] = {}
        for n, sample in enumerate(shown):
            for name, reading in (sample.queues.items() if sample else ()):
                if reading[index] is not None:
                    values.setdefault(name, [None] * len(starts))[n] = reading[index]
        top = sorted(values, key=lambda name: (-max(v or 0 for v in values[name]), name))
        return [(name, values[name]) for name in top[:MAX_LINES]]

    what = _period(hours)
    return (line_chart("chart-depth", "Queue depth", starts, pick(0), clock, "", what),
            line_chart("chart-latency", "Queue latency", starts, pick(1), clock, " s", what))


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def durations_chart(history: History, now: float, hours: int) -> Chart:
    """p50/p95/p99 job duration per class over the last ``hours`` (newest records of each
    class, at most ``RECORDS_PER_CLASS``), slowest p95 first."""
    classes = history.classes()[:CLASSES_READ]
    keys = history.keys
    with history.redis.pipeline(transaction=False) as pipe:
        for name in classes:
            pipe.zrevrangebyscore(keys.history_class(name), "+inf", now - hours * 3600,
                                  start=0, num=RECORDS_PER_CLASS)
        replies: list[Any] = pipe.execute() if classes else []
    rows = []
    for name, raws in zip(classes, replies):
        records = (HistoryRecord.from_json(raw) for raw in raws)
        durations = sorted(r.duration_ms for r in records if r is not None)
        if durations:
            rows.append((name, len(durations),
                         [percentile(durations, pct) for pct in PERCENTILES]))
    rows.sort(key=lambda row: (-row[2][1], row[0]))
    return range_chart("chart-durations", "Job duration by class", rows[:MAX_CLASSES],
                       [f"p{pct}" for pct in PERCENTILES], " ms", _period(hours))


def charts_page(store: SeriesStore, history: History, now: float,
                hours: int) -> dict[str, Any]:
    """Every chart of the charts page for the last ``hours`` (one of :data:`HOURS`)."""
    samples = store.minutes(now - hours * 3600 - step_for(hours))
    depth, latency = queue_charts(samples, now, hours)
    return {
        "hours": hours,
        "choices": HOURS,
        "charts": [jobs_chart(store, now, hours, samples), days_chart(store, now),
                   depth, latency, durations_chart(history, now, hours)],
    }
