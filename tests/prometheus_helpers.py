"""A real Prometheus server for the tests of ``deploy/``, and reading PromQL's metric names.

:class:`PrometheusServer` runs Debian's ``prometheus`` with its own config, a temporary
storage directory and a free loopback port (never the packaged service's :9090), and talks
to its HTTP API. :func:`metric_names` lists the metrics a query names, from the canonical
text Prometheus's own parser gives back (``/api/v1/format_query``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port
from fault_servers import terminate
from worker_helpers import wait_until

DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "pyresqueworker.json"

# What Grafana puts in for its own variables when it sends a panel's query.
GRAFANA_GLOBALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}

# Words of PromQL that are not metric names (aggregations and functions are followed by "(").
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")


def tool(name: str) -> str:
    """Path of a binary of Debian's ``prometheus`` package; CI must have it (scripts/test)."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def metric_names(canonical: str) -> set[str]:
    """The metric names a formatted PromQL expression selects.

    Strings, label matchers, ranges and grouping label lists are dropped first, so what is
    left that is a name and not a call or a keyword is a metric name.
    """
    text = _STRING.sub('""', canonical)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def grafana_to_promql(expr: str, variables: Mapping[str, str]) -> str:
    """A panel's query as Grafana sends it: its variables replaced (``$name`` or ``${name}``)."""
    for name, value in {**GRAFANA_GLOBALS, **{f"${k}": v for k, v in variables.items()}}.items():
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    assert "$" not in expr, f"a variable is left in {expr!r}"
    return expr


def dashboard_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def load_dashboard() -> dict[str, Any]:
    with open(DASHBOARD, encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (job name -> ``host:port`` list) every second and
    evaluating ``rule_files`` every second; stopped, and its storage removed, by :meth:`stop`."""

    def __init__(self, targets: Mapping[str, list[str]], rule_files: Iterable[Path] = ()) -> None:
        binary = tool("prometheus")
        self.dir = Path(tempfile.mkdtemp(prefix="pyresque-prometheus-"))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                               for job, hosts in targets.items()],
        }
        (self.dir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        try:
            wait_until(self._ready, "prometheus to be ready", timeout=30)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """The JSON answer of ``/api/v1/<path>``; a refused query's too (status "error")."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = reply.read()
        except urllib.error.HTTPError as exc:  # 400/422 carry the parse or evaluation error
            body = exc.read()
        answer: dict[str, Any] = json.loads(body)
        return answer

    def _data(self, path: str, **params: str) -> Any:
        answer = self.api(path, **params)
        assert answer["status"] == "success", f"{path} {params}: {answer.get('error')}"
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; a query Prometheus refuses fails the test."""
        data = self._data("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def format_query(self, expr: str) -> str:
        """``expr`` parsed by Prometheus and printed back in its canonical form."""
        return str(self._data("format_query", query=expr))

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self._data("rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self._data("alerts")["alerts"]
        return alerts

    def stop(self) -> None:
        terminate(self.process, grace=10)
        shutil.rmtree(self.dir, ignore_errors=True)
