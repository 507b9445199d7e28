"""Smoke test of scripts/bench.py: ``--quick`` runs end to end, prints the table, writes JSON.

No timing is asserted: CI machines are shared and noisy. Peers (the ``[bench]`` extra) are
used when installed and reported as skipped otherwise; both paths must produce a report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_prints_machine_info_table_ratios_and_targets(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, _ = quick_run
    assert "pyresqueworker benchmark," in stdout and "redis-server" in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("workload"))
    for column in ("median", "min-max", "cmds/job", "RTs/job", "RSS MB"):
        assert column in header
    for system in ("ours 1 proc x 1 slot", "ours 2 procs x 8 slots", "raw socket loop",
                   "ours enqueue_many"):
        assert system in stdout
    assert "Ratios ours / peer" in stdout and "Targets" in stdout
    assert "wrote " in stdout


def test_json_holds_every_workload_measured_for_ours(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    _, results = quick_run
    assert isinstance(results["machine"], dict)
    assert {"nproc", "python", "redis_server", "date", "pinning"} <= set(results["machine"])
    rows = results["rows"]
    assert isinstance(rows, list)
    ours = [r for r in rows if r["system"].startswith(("ours", "floor", "raw", "Claimer"))]
    assert {r["workload"] for r in ours} == {"floor", "drain", "enqueue", "io", "latency",
                                             "payload", "logging", "ioscale", "idle"}
    for row in ours:
        if row["workload"] == "ioscale" and not row["samples"].get("value"):
            # --execution asyncio may not exist in this checkout: the worker's error is shown.
            assert row["note"].startswith("failed: "), row
            continue
        assert row["samples"]["value"], f"{row['workload']} {row['system']}: {row['note']}"
        # Idle workers may send no command at all in the short quick window.
        assert all(v > 0 or row["workload"] == "idle" for v in row["samples"]["value"])
    drain = next(r for r in ours if r["system"] == "ours 1 proc x 1 slot"
                 and r["workload"] == "drain")
    # Our claim folds the completion in: about one round trip per job, whatever the speed.
    assert 0.9 <= drain["median"]["rts_per_job"] <= 1.5
    assert drain["median"]["rss_mb"] > 0
    assert {t["target"] for t in results["targets"]} >= {"enqueue_to (jobs/s)",
                                                         "I/O-bound (jobs/s)"}


def test_scale_rows_report_their_own_columns(quick_run: tuple[str, dict[str, Any]]) -> None:
    stdout, results = quick_run
    headers = [line for line in stdout.splitlines() if line.startswith("workload")]
    assert any("Redis conns" in h and "threads" in h and "start-up s" in h for h in headers)
    assert any("top-level/s" in h and "Redis CPU %" in h for h in headers)
    rows = {(r["workload"], r["system"]): r for r in results["rows"]}
    idle = rows[("idle", "ours idle 1x1x1")]["median"]
    assert idle["redis_cpu_pct"] >= 0 and idle["conns"] >= 1 and idle["startup_s"] > 0
    payload = rows[("payload", "ours 1 proc x 1 slot, 10 KB")]["median"]
    assert payload["redis_cpu_us"] > 0
    # Resque's bare commands for the same jobs: LPOP (with the last job's DEL and INCRBYs),
    # then SET; shown as what our per-job cost is measured against.
    floor = rows[("payload", "floor: Resque's commands, bare socket, 10 KB")]["median"]
    assert floor["redis_cpu_us"] > 0 and 1.9 <= floor["rts_per_job"] <= 2.2
    assert 4.5 <= floor["cmds_per_job"] <= 5.5  # LPOP, SET, DEL, 2 INCRBY
    assert any(r["ours"] == "ours 1 proc x 1 slot, 10 KB" and r["peer"].startswith("floor:")
               and r["metric"] == "redis_cpu_us" for r in results["ratios"])
    assert rows[("latency", "ours 1 slot, 5th of 5 queues")]["median"]["value"] > 0
    scale = rows[("ioscale", "ours asyncio C=100")]
    if scale["samples"].get("value"):
        assert scale["median"]["conns"] >= 1 and scale["median"]["threads"] >= 1
    names = {t["target"] for t in results["targets"]}
    assert {"drain, Redis CPU per job, 1 slot (us)", "logging, drain at info / at warning",
            "idle 50x8x5, commands/s (incl. in scripts)",
            "idle pick-up p50, 5th of 5 queues (ms)"} <= names
    lines = stdout.split("Targets", 1)[1].splitlines()
    for target in results["targets"]:
        line = next(ln for ln in lines if target["target"] in ln)
        assert " goal " in line and line.rstrip().endswith(("met", "MISSED", "not measured"))


def test_peers_are_measured_or_skipped_with_a_note(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    _, results = quick_run
    notes = " ".join(results["notes"])
    for peer, label in (("rq", "rq SimpleWorker"), ("dramatiq", "dramatiq 1 proc x 8 threads"),
                        ("arq", "arq (defaults)"), ("sidekiq", "sidekiq c=10")):
        row = next(r for r in results["rows"]
                   if r["workload"] == "drain" and r["system"] == label)
        if row["samples"].get("value"):
            assert row["median"]["value"] > 0
        else:
            assert f"{peer}: skipped" in notes and row["note"]
