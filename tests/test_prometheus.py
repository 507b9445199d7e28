"""deploy/: the alert rules and the Grafana dashboard, against promtool and a real Prometheus.

A worker with ``--metrics-port`` runs jobs while a real Prometheus scrapes it (and a target
nobody serves) and evaluates ``alerts.yml``: the jobs counted there, the alerts that go
pending, every dashboard query answering with data, and every metric any of them names being
one the worker serves.
"""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest
import redis
import yaml
from conftest import RedisServer, free_port
from prometheus_client.parser import text_string_to_metric_families
from prometheus_helpers import (
    ALERTS,
    ALERTS_TEST,
    GRAFANA_GLOBALS,
    PrometheusServer,
    dashboard_panels,
    grafana_to_promql,
    load_dashboard,
    metric_names,
    tool,
)
from worker_helpers import WorkerProc, failures, ran, start_worker, wait_until

from pyresqueworker.jobs.activejob import job_data, wrapper_payload
from pyresqueworker.protocol import wire

JOB = "pyresque"  # the scrape job name alerts.yml and the dashboard expect
ALERT_NAMES = {"PyresqueWorkerDown", "PyresqueHeartbeatStale", "PyresqueQueueLatencyHigh",
               "PyresqueJobsWaitingWithoutWorkers", "PyresqueFailureRateHigh",
               "PyresqueRedisDown"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# How Grafana's "All" of the dashboard's variables reads in a query.
VARIABLES = {"job": JOB, "queue": ".*"}


def rule_file() -> dict[str, Any]:
    with open(ALERTS, encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded


def rule_exprs() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for group in rule_file()["groups"]
            for rule in group["rules"]}


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard_panels(load_dashboard())
            for target in panel.get("targets", [])]


def variable_queries() -> list[tuple[str, str]]:
    """(selector, label) of each ``label_values(selector, label)`` template variable."""
    found = []
    for variable in load_dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["definition"])
            assert match, variable["definition"]
            found.append((match.group(1), match.group(2)))
    return found


# -- promtool, no server ------------------------------------------------------------------------


def test_promtool_accepts_the_alert_rules() -> None:
    done = subprocess.run([tool("promtool"), "check", "rules", str(ALERTS)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in done.stdout
    assert set(rule_exprs()) == ALERT_NAMES


def test_each_alert_fires_in_promtools_unit_tests() -> None:
    with open(ALERTS_TEST, encoding="utf-8") as handle:
        tests = yaml.safe_load(handle)["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    assert fired == ALERT_NAMES
    done = subprocess.run([tool("promtool"), "test", "rules", str(ALERTS_TEST)],
                          capture_output=True, text=True, timeout=60, cwd=ALERTS_TEST.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_metric_names_are_read_past_calls_matchers_and_grouping() -> None:
    expr = ('sum by (le, queue) (rate(a_bucket{x="{b}",y=~"c|d"}[5m]))'
            ' / on (queue) group_left (class) b:recorded > bool 3 and c offset 5m'
            ' or vector(1e3) unless d @ start()')
    assert metric_names(expr) == {"a_bucket", "b:recorded", "c", "d"}


# -- the Grafana dashboard's shape ---------------------------------------------------------------


def test_dashboard_is_an_importable_grafana_dashboard_with_a_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "queue"):
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["allValue"] == ".*"

    panels = dashboard_panels(dashboard)
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] in {"stat", "timeseries", "row"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"], panel["title"]
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= set(variables) | {g[1:] for g in GRAFANA_GLOBALS}, used


# -- a real Prometheus scraping a real worker ----------------------------------------------------


@dataclass
class Stack:
    r: redis.Redis
    prometheus: PrometheusServer
    worker: str  # the worker's scrape target
    dead: str  # a target nobody serves
    stale_worker: str  # a worker id whose heartbeat is 200 s old
    exported: set[str]  # every sample name the worker's /metrics serves


def enqueue(r: redis.Redis, queue: str, *payloads: dict[str, Any]) -> None:
    r.sadd("resque:queues", queue)
    r.rpush(f"resque:queue:{queue}", *[wire.dumps(p) for p in payloads])


def wait_jobs(r: redis.Redis, succeeded: int, failed: int) -> None:
    wait_until(lambda: (len(ran(r)) == succeeded and len(failures(r)) == failed) or None,
               f"{succeeded} jobs run and {failed} failed")


def exported_names(target: str) -> set[str]:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    server = RedisServer()
    worker: Optional[WorkerProc] = None
    prometheus: Optional[PrometheusServer] = None
    try:
        r = server.client()
        port = free_port()
        worker = start_worker(server.url, "--queues", "m", "--metrics-port", str(port))
        worker.wait_log("serving metrics")
        target, dead = f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"
        # One job of each outcome before the first scrape: rate() sees an increase only
        # from a series' second sample on.
        enqueue(r, "m", {"class": "Record", "args": [0]}, {"class": "Boom", "args": ["x"]})
        wait_jobs(r, 1, 1)
        prometheus = PrometheusServer({JOB: [target, dead]}, [ALERTS])
        wait_until(lambda: len(prometheus.query(f'pyresque_jobs_total{{instance="{target}"}}'))
                   == 2, "the first scrape of the worker", timeout=30)

        enqueue(r, "m", *[{"class": "Record", "args": [n]} for n in range(1, 7)],
                *[{"class": "Boom", "args": [f"no {n}"]} for n in range(3)])
        now = int(r.time()[0])
        # A queue no worker takes, whose ActiveJob job has waited 10 minutes.
        enqueue(r, "late", wrapper_payload(job_data("HelloJob", [], enqueued_at=now - 600)))
        # A worker of this host whose heartbeat is stale, but not yet old enough to be pruned.
        stale = f"{socket.gethostname()}:999999:late"
        r.hset("resque:workers:heartbeat", stale, wire.heartbeat_value(now - 200))
        wait_jobs(r, 7, 4)
        yield Stack(r, prometheus, target, dead, stale, exported_names(target))
    finally:
        if prometheus is not None:
            prometheus.stop()
        if worker is not None:
            worker.cleanup()
        server.stop()


def test_prometheus_counts_the_jobs_the_worker_ran(stack: Stack) -> None:
    def by_outcome() -> Optional[dict[str, float]]:
        result = stack.prometheus.query("sum by (outcome) (pyresque_jobs_total)")
        counts = {s["metric"]["outcome"]: float(s["value"][1]) for s in result}
        return counts if counts == {"success": 7, "failure": 4} else None

    wait_until(by_outcome, "7 successes and 4 failures in Prometheus", timeout=30)
    series = stack.prometheus.query('pyresque_jobs_total{outcome="failure"}')
    assert [s["metric"] for s in series] == [{
        "__name__": "pyresque_jobs_total", "job": JOB, "instance": stack.worker,
        "queue": "m", "class": "Boom", "outcome": "failure"}]


def test_alerts_load_evaluate_and_go_pending_on_the_real_metrics(stack: Stack) -> None:
    expected = {("PyresqueWorkerDown", "instance", stack.dead),
                ("PyresqueHeartbeatStale", "worker", stack.stale_worker),
                ("PyresqueQueueLatencyHigh", "queue", "late"),
                ("PyresqueFailureRateHigh", "queue", "m")}

    def pending() -> Optional[set[tuple[str, str, str]]]:
        alerts = stack.prometheus.alerts()
        found = {(a["labels"]["alertname"], key, a["labels"].get(key)) for a in alerts
                 for name, key, _ in expected if a["labels"]["alertname"] == name}
        names = {a["labels"]["alertname"] for a in alerts}
        return found if found == expected and names == {e[0] for e in expected} else None

    wait_until(pending, "the four alerts the stack should raise", timeout=30)
    assert {a["state"] for a in stack.prometheus.alerts()} == {"pending"}  # `for:` not passed
    rules = stack.prometheus.rules()
    assert {rule["name"] for rule in rules} == ALERT_NAMES
    assert all(rule["health"] == "ok" and not rule.get("lastError") for rule in rules), rules


def test_every_dashboard_query_answers_with_data(stack: Stack) -> None:
    for query in [grafana_to_promql(expr, VARIABLES) for expr in dashboard_exprs()]:
        wait_until(lambda q=query: stack.prometheus.query(q), f"data for {query}", timeout=30)
    for selector, label in variable_queries():
        series = stack.prometheus.query(grafana_to_promql(selector, VARIABLES))
        assert any(label in s["metric"] for s in series), (selector, label)


def test_rules_and_dashboard_name_only_metrics_the_worker_serves(stack: Stack) -> None:
    exprs = [*rule_exprs().values(), *dashboard_exprs(), *(s for s, _ in variable_queries())]
    named: set[str] = set()
    for expr in exprs:
        names = metric_names(stack.prometheus.format_query(grafana_to_promql(expr, VARIABLES)))
        assert names, expr
        named |= names
    # `up` is Prometheus's own series for each scraped target: the worker-down alert's signal.
    assert named - stack.exported == {"up"}
    assert {s["metric"]["instance"]: s["value"][1] for s in stack.prometheus.query(
        f'up{{job="{JOB}"}}')} == {stack.worker: "1", stack.dead: "0"}
