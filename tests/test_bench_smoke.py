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


def test_workflow_is_opt_in_and_measures_results_and_a_batch(tmp_path: Path) -> None:
    """``--only workflow`` (not in the default run): the drain with every job keeping its
    result, as drain rows, and a batch: last job end to callback, opening, Redis memory."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only", "workflow", "--peers", "",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = {(r["workload"], r["system"], r["unit"]): r for r in results["rows"]}
    for slots in ("1 proc x 1 slot", "1 proc x 8 slots"):
        median = rows[("drain", f"ours {slots}, results", "jobs/s")]["median"]
        assert median["value"] > 0 and median["redis_cpu_us"] > 0, median
        # The claim and one finish per job, both EVALSHA (plus, at most, a worker's periodic
        # probe), the finish in the round trip of the next claim.
        assert 2 <= median["scripts_per_job"] <= 2.02 and median["rts_per_job"] <= 1.5, median
    n = "10,000"
    latency = rows[("workflow", f"ours 1 proc x 8 slots, batch of {n}: last job end → callback "
                                "enqueued", "ms")]
    assert 0 < latency["median"]["value"] < 5_000, latency
    assert latency["median"]["from_finish_ms"] < 5_000, latency
    opened = rows[("workflow", f"batch of {n}: open (1 script call)", "ms")]["median"]
    assert 0 < opened["redis_ms"] <= opened["value"]
    for state in ("pending", "completed"):
        memory = rows[("workflow", f"batch of {n}: Redis memory, {state}", "MB")]["median"]
        assert memory["value"] > 0 and 100 < memory["bytes_per_job"] < 10_000, memory
    assert {"drain with results, script calls/job over plain",
            "drain with results, RTs/job over plain"} <= {t["target"] for t in
                                                          results["targets"]}
    assert any(n.startswith("workflow: ") for n in results["notes"])
    table = proc.stdout.split("Ratios", 1)[0]
    assert "finish→cb ms" in table and "bytes/job" in table
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchkit.common import OPT_IN, WORKLOADS

    assert "workflow" in OPT_IN and "workflow" not in WORKLOADS  # --only selects it


def _git_head() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)
    if shutil.which("git") is None or done.returncode != 0:
        pytest.skip("not a git checkout: --baseline needs git")
    return done.stdout.strip()


def test_baseline_measures_ours_at_a_revision_beside_the_working_tree(tmp_path: Path) -> None:
    """``--baseline HEAD``: each of our rows also at HEAD (from a temporary git archive), side
    by side in one run, with after / before and the per-job differences."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    head, out = _git_head(), tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--baseline", "HEAD", "--quick", "--only", "payload",
         "--peers", "", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    base = results["baseline"]
    assert base["sha"] == head and base["ref"] == "HEAD" and base["name"].startswith("ours@")
    assert head.startswith(base["name"].removeprefix("ours@"))
    assert not Path(base["root"]).exists()  # the temporary archive is gone
    rows = {r["system"]: r for r in results["rows"] if r["workload"] == "payload"}
    after, before = "ours 1 proc x 1 slot, 10 KB", f"{base['name']} 1 proc x 1 slot, 10 KB"
    for system in (after, before):  # both measured, with their Redis counts
        median = rows[system]["median"]
        assert median["value"] > 0 and median["redis_cpu_us"] > 0, rows[system]
        assert median["cmds_per_job"] > 1 and median["rts_per_job"] >= 1, rows[system]
    (record,) = base["comparisons"]
    assert (record["workload"], record["system"], record["unit"]) == ("payload", after, "jobs/s")
    assert record["before"] == rows[before]["median"]["value"]
    assert record["after"] == rows[after]["median"]["value"]
    assert record["ratio"] == pytest.approx(record["after"] / record["before"])
    assert {"redis_cpu_us", "cmds_per_job", "rts_per_job"} <= set(record["delta"])
    assert record["verdict"] in ("same", "better", "WORSE")
    # The table: both rows, then the before / after section with the ratio.
    stdout = proc.stdout
    assert before in stdout and after in stdout
    section = stdout.split("Before and after: before = " + base["name"], 1)[1]
    header = section.splitlines()[1]
    for column in ("before", "after", "after/before", "Redis us/job", "cmds/job", "RTs/job"):
        assert column in header
    line = next(ln for ln in section.splitlines() if ln.startswith("payload"))
    assert after in line and f"{record['ratio']:.3f}" in line
    assert "rows within +-5% of before" in section


def test_baseline_refuses_an_unknown_revision() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--baseline", "no-such-revision-x9", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0 and "--baseline no-such-revision-x9" in proc.stderr


def test_comparison_flags_rows_outside_five_percent_and_more_commands() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchkit.common import Checkout, Row
    from benchkit.compare import compare

    code = Checkout("ours@abc1234", "/nowhere", "m:f", "main", "abc1234" * 5)

    def pair(workload: str, system: str, unit: str, old: dict[str, float],
             new: dict[str, float]) -> list[Row]:
        return [Row(workload, code.name + system, unit, samples={k: [v] for k, v in old.items()}),
                Row(workload, "ours" + system, unit, samples={k: [v] for k, v in new.items()})]

    rows = [*pair("drain", " 1x1", "jobs/s", {"value": 100, "cmds_per_job": 10, "rts_per_job": 1},
                  {"value": 96, "cmds_per_job": 10, "rts_per_job": 1}),
            *pair("drain", " 1x8", "jobs/s", {"value": 100, "cmds_per_job": 10},
                  {"value": 94, "cmds_per_job": 11}),
            *pair("latency", " 1 slot", "ms p50", {"value": 1.0}, {"value": 0.9}),
            *pair("idle", " idle 50x8x5", "cmds/s", {"value": 30}, {"value": 33}),
            *pair("idle", " idle 1x1x1", "cmds/s", {"value": 0}, {"value": 0}),
            *pair("idle", " idle 1x8x5", "cmds/s", {"value": 0}, {"value": 0.4}),
            Row("drain", "ours 1x25", "jobs/s", samples={"value": [1.0]})]  # no twin: not shown
    got = {r["system"]: r for r in compare(rows, code)}
    assert set(got) == {"ours 1x1", "ours 1x8", "ours 1 slot", "ours idle 50x8x5",
                        "ours idle 1x1x1", "ours idle 1x8x5"}
    assert got["ours 1x1"]["verdict"] == "same" and got["ours 1x1"]["flags"] == []
    assert got["ours 1x1"]["ratio"] == pytest.approx(0.96)
    assert got["ours 1x8"]["flags"] == ["WORSE", "more commands"]
    assert got["ours 1x8"]["delta"]["cmds_per_job"] == 1
    assert got["ours 1 slot"]["verdict"] == "better"  # lower latency is better
    assert got["ours idle 50x8x5"]["verdict"] == "WORSE"  # more idle commands are worse
    assert (got["ours idle 1x1x1"]["verdict"], got["ours idle 1x1x1"]["ratio"]) == ("same", 1.0)
    assert (got["ours idle 1x8x5"]["verdict"], got["ours idle 1x8x5"]["ratio"]) == ("WORSE", None)
