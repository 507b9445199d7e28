"""Charts drawn on the server as SVG: geometry here, markup in ``templates/chart.html``.

A :class:`Chart` holds positions and texts only; the template turns it into an inline
``<svg>`` whose every value Jinja escapes, so no script and no inline style is needed and the
dashboard's Content-Security-Policy stays as strict as it is. Each chart carries a ``<title>``,
a ``<desc>`` summing it up in words, a tooltip per bar and its values as a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = [
    "Chart",
    "bar_chart",
    "compact",
    "line_chart",
    "nice_ceiling",
    "number",
    "range_chart",
]

WIDTH = 640
HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 24  # plot margins: y labels left, x labels below
SERIES_CLASSES = 6  # line series get classes s0..s5 (colours in dashboard.css)

Label = Callable[[int], str]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str


@dataclass(frozen=True)
class Group:
    """Shapes sharing one tooltip (a bucket's bars, a class's percentiles)."""

    tip: str
    rects: list[Rect]


@dataclass(frozen=True)
class Line:
    css: str
    points: str  # "x,y x,y ..." for a <polyline>


@dataclass(frozen=True)
class Text:
    """An axis label; ``anchor`` is SVG's text-anchor (start, middle, end)."""

    x: float
    y: float
    label: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Segment:
    """A gridline."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class Chart:
    """Everything the ``chart`` macro draws."""

    id: str
    title: str
    desc: str
    empty: str = ""  # shown instead of the plot when there is nothing to draw
    width: int = WIDTH
    height: int = HEIGHT
    groups: list[Group] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    grid: list[Segment] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (name, css class)
    columns: list[str] = field(default_factory=list)  # the values table
    rows: list[list[str]] = field(default_factory=list)

    @property
    def plot_bottom(self) -> int:
        return self.height - BOTTOM

    @property
    def plot_right(self) -> int:
        return self.width - RIGHT


def nice_ceiling(value: float) -> float:
    """The least of 1, 2 or 5 times a power of ten that is at least ``value`` (1 for 0)."""
    if not value > 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(f * power for f in (1, 2, 5, 10) if f * power >= value * (1 - 1e-9))


def number(value: Optional[float], unit: str = "") -> str:
    """A value as the charts write it: ``-`` when unknown, whole numbers without decimals."""
    if value is None:
        return "-"
    text = f"{value:.0f}" if value >= 100 or float(value).is_integer() else f"{value:.1f}"
    return text + unit


def compact(value: float, unit: str = "") -> str:
    """An axis label: ``750``, ``12.5k``, ``3.75M``."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= max(size, 1e4):  # 2500 stays 2500
            return f"{value / size:g}{suffix}{unit}"
    return number(value, unit)


def _y_axis(chart: Chart, top_value: float, unit: str) -> Callable[[float], float]:
    """Gridlines and labels for 0..``top_value`` and the value -> y mapping."""
    scale = nice_ceiling(top_value)
    span = chart.plot_bottom - TOP
    for k in range(5):
        y = round(chart.plot_bottom - span * k / 4, 2)
        chart.grid.append(Segment(LEFT, y, chart.plot_right, y))
        chart.texts.append(Text(LEFT - 4, y + 4, compact(scale * k / 4, unit), "end"))
    return lambda value: chart.plot_bottom - span * min(value, scale) / scale


def _x_ticks(chart: Chart, starts: Sequence[int], slot: float, label: Label) -> None:
    every = max(1, math.ceil(len(starts) / 6))  # about six labels, whatever the range
    chart.texts += [Text(round(LEFT + slot * (n + 0.5), 2), chart.plot_bottom + 16,
                         label(start)) for n, start in enumerate(starts) if n % every == 0]


def bar_chart(id: str, title: str, starts: Sequence[int],
              series: Sequence[tuple[str, str, Sequence[Optional[float]]]],
              label: Label, what: str, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Chart:
    """Bars over time; the series are drawn over one another, so list the largest first
    (processed, then failed, which Resque counts among the processed).

    ``series``: (name, css class, one value per start). ``label``: a start's axis text.
    ``what``: the period in words for the description (``"the last 3 hours"``); ``size``: the
    drawing's width and height in SVG units (it is scaled to the page's width).
    """
    totals = [sum(v for v in values if v is not None) for _, _, values in series]
    known = [v for _, _, values in series for v in values if v is not None]
    summary = ", ".join(f"{number(total)} {name}" for (name, _, _), total in zip(series, totals))
    chart = Chart(id, title, f"{title} over {what}: {summary}." if known else
                  f"{title} over {what}: no samples yet.",
                  width=size[0], height=size[1], legend=[(name, css) for name, css, _ in series],
                  columns=["Start", *(name for name, _, _ in series)])
    if not known:
        chart.empty = "No samples in this period yet: workers take one each minute."
        return chart
    y = _y_axis(chart, max(known), "")
    slot = (chart.plot_right - LEFT) / max(1, len(starts))
    for n, start in enumerate(starts):
        values = [values[n] for _, _, values in series]
        if all(v is None for v in values):
            continue
        x = LEFT + slot * n + slot * 0.1
        rects = [Rect(round(x, 2), round(y(v), 2), round(slot * 0.8, 2),
                      round(chart.plot_bottom - y(v), 2), css)
                 for (_, css, _), v in zip(series, values) if v]
        tip = f"{label(start)}: " + ", ".join(
            f"{number(v)} {name}" for (name, _, _), v in zip(series, values))
        chart.groups.append(Group(tip, rects))
        chart.rows.append([label(start), *(number(v) for v in values)])
    _x_ticks(chart, starts, slot, label)
    chart.rows.reverse()  # newest first in the table
    return chart


def line_chart(id: str, title: str, starts: Sequence[int],
               series: Sequence[tuple[str, Sequence[Optional[float]]]],
               label: Label, unit: str, what: str) -> Chart:
    """One line per series (at most six: the caller picks them); gaps where a value is
    unknown. ``unit`` follows the numbers (``" s"``)."""
    known = [v for _, values in series for v in values if v is not None]
    chart = Chart(id, title, "", columns=["Start", *(name for name, _ in series)])
    if not known:
        chart.desc = f"{title} over {what}: no samples yet."
        chart.empty = "No samples in this period yet: workers take one each minute."
        return chart
    chart.desc = f"{title} over {what}, the latest value of each: " + ", ".join(
        f"{name} {number(_last(values), unit)}" for name, values in series) + "."
    y = _y_axis(chart, max(known), unit)
    slot = (chart.plot_right - LEFT) / max(1, len(starts))
    for k, (name, values) in enumerate(series):
        css = f"s{k % SERIES_CLASSES}"
        chart.legend.append((name, css))
        run: list[str] = []
        for n, value in enumerate([*values, None]):  # the None ends the last run
            if value is None:
                if run:
                    # A lone point still shows: a polyline of one point draws nothing.
                    points = run if len(run) > 1 else [run[0], run[0].replace(",", ".01,", 1)]
                    chart.lines.append(Line(css, " ".join(points)))
                run = []
                continue
            run.append(f"{LEFT + slot * (n + 0.5):.2f},{y(value):.2f}")
    for n, start in reversed(list(enumerate(starts))):
        values = [values[n] for _, values in series]
        if any(v is not None for v in values):
            chart.rows.append([label(start), *(number(v, unit) for v in values)])
    _x_ticks(chart, starts, slot, label)
    return chart


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def _last(values: Sequence[Optional[float]]) -> Optional[float]:
    return next((v for v in reversed(values) if v is not None), None)


def range_chart(id: str, title: str,
                rows: Sequence[tuple[str, int, Sequence[float]]], names: Sequence[str],
                unit: str, what: str) -> Chart:
    """Horizontal bars per row, drawn over one another from the largest value down (for
    percentiles: p99 behind p95 behind p50). ``rows``: (label, count, values in ``names``
    order, ascending)."""
    chart = Chart(id, title, "", height=TOP + BOTTOM + 22 * max(1, len(rows)),
                  columns=["Class", "Jobs", *names])
    if not rows:
        chart.desc = f"{title} over {what}: no records."
        chart.empty = "No job history in this period: workers record it with --history."
        return chart
    chart.desc = f"{title} over {what}: " + "; ".join(
        f"{label} " + ", ".join(f"{n} {number(v, unit)}" for n, v in zip(names, values))
        for label, _, values in rows) + "."
    left = 180  # room for class names
    scale = nice_ceiling(max(max(values) for _, _, values in rows))
    span = chart.plot_right - left
    for k in range(5):
        x = round(left + span * k / 4, 2)
        chart.grid.append(Segment(x, TOP, x, chart.plot_bottom))
        chart.texts.append(Text(x, chart.plot_bottom + 16, compact(scale * k / 4, unit),
                                "end" if k == 4 else "middle"))
    for n, (label, count, values) in enumerate(rows):
        y = TOP + 22 * n + 3
        rects = [Rect(left, y, round(span * v / scale, 2), 16, f"p{k}")
                 for k, v in reversed(list(enumerate(values)))]
        chart.groups.append(Group(f"{label} ({count} jobs): " + ", ".join(
            f"{name} {number(v, unit)}" for name, v in zip(names, values)), rects))
        chart.texts.append(Text(left - 6, y + 12, _cut(label, 28), "end"))
        chart.rows.append([label, str(count), *(number(v, unit) for v in values)])
    chart.legend = [(name, f"p{k}") for k, name in enumerate(names)]
    return chart
