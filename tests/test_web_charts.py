"""The dashboard's charts: SVG geometry, and the pages that draw them from the series and the
job history kept in a real Redis (strict CSP: no script, no inline style)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
import redis
from web_helpers import XSS_SCRIPT, WsgiClient

from pyresqueworker import Client
from pyresqueworker.protocol import wire
from pyresqueworker.web.app import SECURITY_HEADERS, Dashboard
from pyresqueworker.web.chart_data import percentile, step_for
from pyresqueworker.web.charts import TOP, bar_chart, compact, line_chart, nice_ceiling, range_chart
from pyresqueworker.worker.timeseries import Sample, SeriesStore

NS = "resque:"
SVG = "{http://www.w3.org/2000/svg}"
NOW = 1_700_006_400.0 + 3 * 3600 + 30  # 03:00:30 UTC


def label(start: int) -> str:
    return f"t{start}"


def svg_of(page: str, chart_id: str) -> ET.Element:
    """The chart's <svg>, parsed as XML (it must be well formed)."""
    figure = re.search(rf'<figure class="chart" id="{chart_id}">(.*?)</figure>', page, re.S)
    assert figure, f"no chart {chart_id}"
    svg = re.search(r"<svg .*?</svg>", figure.group(1), re.S)
    assert svg, f"chart {chart_id} has no drawing"
    return ET.fromstring(svg.group(0))


def test_axis_values_are_round() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 10, 11, 180, 2001)] == [
        1, 0.5, 1, 10, 10, 20, 200, 5000]
    assert [compact(v) for v in (0, 750, 12_500, 3_750_000)] == ["0", "750", "12.5k", "3.75M"]


def test_bars_are_as_tall_as_their_values() -> None:
    chart = bar_chart("c", "Jobs", [0, 60, 120, 180], [
        ("processed", "processed", [10, None, 40, 0]),
        ("failed", "failed", [2, None, 0, 0]),
    ], label, "4 minutes")
    assert chart.desc == "Jobs over 4 minutes: 50 processed, 2 failed."
    assert [g.tip for g in chart.groups] == [
        "t0: 10 processed, 2 failed", "t120: 40 processed, 0 failed",
        "t180: 0 processed, 0 failed"]
    plot = chart.plot_bottom - TOP
    heights = [[(r.css, r.height) for r in g.rects] for g in chart.groups]
    assert heights == [[("processed", plot * 10 / 50), ("failed", plot * 2 / 50)],
                       [("processed", plot * 40 / 50)], []]
    assert chart.rows[0] == ["t180", "0", "0"] and chart.rows[-1] == ["t0", "10", "2"]
    assert [t.label for t in chart.texts if t.anchor == "end"] == [
        "0", "12.5", "25", "37.5", "50"]


def test_a_chart_without_samples_says_so() -> None:
    chart = bar_chart("c", "Jobs", [0, 60], [("processed", "processed", [None, None])],
                      label, "the last hour")
    assert chart.empty and not chart.groups and chart.desc.endswith("no samples yet.")


def test_lines_break_where_values_are_unknown() -> None:
    chart = line_chart("c", "Depth", [0, 60, 120, 180, 240], [
        ("mail", [1, 2, None, 4, None]), ("low", [None, None, 5, None, None])],
        label, "", "5 minutes")
    assert [(line.css, len(line.points.split())) for line in chart.lines] == [
        ("s0", 2), ("s0", 2), ("s1", 2)]  # a lone point is drawn as a dot
    assert chart.desc == "Depth over 5 minutes, the latest value of each: mail 4, low 5."
    assert [row[0] for row in chart.rows] == ["t180", "t120", "t60", "t0"]


def test_percentile_bars_draw_the_largest_behind() -> None:
    chart = range_chart("c", "Durations", [("Slow", 3, [10.0, 90.0, 100.0])],
                        ["p50", "p95", "p99"], " ms", "the last hour")
    [group] = chart.groups
    assert [r.css for r in group.rects] == ["p2", "p1", "p0"]
    assert group.rects[0].width > group.rects[-1].width
    assert group.tip == "Slow (3 jobs): p50 10 ms, p95 90 ms, p99 100 ms"
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


@pytest.fixture
def app(r: redis.Redis) -> WsgiClient:
    return WsgiClient(Dashboard(Client(r), clock=lambda: NOW))


def seed_minutes(r: redis.Redis, queue: str = "mail") -> None:
    store = SeriesStore(r, wire.Keys())
    for n in range(10, 0, -1):  # ten minutes of 6 jobs, one of them failed
        store.write(Sample(NOW - 60 * n, 600 - 60 * n // 10, 100 - n,
                           {queue: (n, float(n * 10))}))
    r.set(NS + "stat:processed", 603)  # three more this minute, live
    r.set(NS + "stat:failed", 100)


def test_the_charts_page_draws_the_series(app: WsgiClient, r: redis.Redis) -> None:
    seed_minutes(r)
    status, headers, page = app.get("/charts?hours=1")
    assert status == "200 OK"
    assert dict(SECURITY_HEADERS)["Content-Security-Policy"] == headers[
        "Content-Security-Policy"]
    assert "style=" not in page and "<script>" not in page  # nothing the CSP would block
    jobs = svg_of(page, "chart-jobs")
    assert jobs.get("role") == "img"
    assert jobs.findtext(SVG + "title") == "Jobs per minute"
    assert jobs.findtext(SVG + "desc") == (
        "Jobs per minute over the last hour: 63 processed, 10 failed.")
    assert len(jobs.findall(f"{SVG}g[@class='bar']")) == 10
    depth = svg_of(page, "chart-depth")
    assert "mail 1." in (depth.findtext(SVG + "desc") or "")
    assert depth.findall(f"{SVG}polyline")
    latency = svg_of(page, "chart-latency")
    assert "mail 10 s." in (latency.findtext(SVG + "desc") or "")
    assert "No job history in this period" in page  # no --history: the durations say so


def test_the_overview_shows_the_last_hour(app: WsgiClient, r: redis.Redis) -> None:
    seed_minutes(r)
    _, _, page = app.get("/")
    assert "63 processed, 10 failed" in (svg_of(page, "chart-jobs").findtext(SVG + "desc") or "")
    assert 'href="/charts"' in page


def test_durations_per_class_come_from_the_history(app: WsgiClient, r: redis.Redis) -> None:
    keys = wire.Keys()
    for n in range(1, 101):
        for cls, scale in (("Fast", 1.0), ("Slow", 30.0)):
            record = wire.dumps({
                "finished_at": NOW - n, "outcome": "success", "duration_ms": n * scale,
                "queue": "q", "class": cls, "worker": "h:1:q", "job_id": None, "error": None,
                "payload_bytes": 2, "payload": None})
            r.zadd(keys.history_class(cls), {record: NOW - n})
    old = json.dumps({"finished_at": NOW - 7200, "outcome": "success", "duration_ms": 1e6,
                      "queue": "q", "class": "Fast", "worker": "w", "job_id": None,
                      "error": None, "payload_bytes": 2, "payload": None})
    r.zadd(keys.history_class("Fast"), {old: NOW - 7200})  # outside the hour: not counted
    _, _, page = app.get("/charts?hours=1")
    chart = svg_of(page, "chart-durations")
    assert chart.findtext(SVG + "desc") == (
        "Job duration by class over the last hour: Slow p50 1500 ms, p95 2850 ms, "
        "p99 2970 ms; Fast p50 50 ms, p95 95 ms, p99 99 ms.")


def test_hostile_queue_names_stay_text(app: WsgiClient, r: redis.Redis) -> None:
    seed_minutes(r, queue=XSS_SCRIPT)
    _, _, page = app.get("/charts")
    assert XSS_SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert XSS_SCRIPT in (svg_of(page, "chart-depth").findtext(SVG + "desc") or "")


def test_periods_and_their_bars(app: WsgiClient, r: redis.Redis) -> None:
    assert [step_for(h) for h in (1, 3, 6, 24)] == [60, 60, 120, 480]
    _, _, page = app.get("/charts?hours=nonsense")
    assert "<strong>3 h</strong>" in page
    _, _, page = app.get("/charts?hours=24")
    assert "<strong>24 h</strong>" in page and "Jobs per 8 minutes" in page
    assert page.count("No samples in this period yet") == 4  # jobs, days, depth, latency
