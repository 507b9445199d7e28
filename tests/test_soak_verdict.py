"""The soak's verdict rules (scripts/soakkit), on made-up ledgers: no servers, no workers.

``scripts/soak.py`` itself runs in ``scripts/test`` after pytest; these pin down what its
criteria mean, so a change to a rule shows up here and not only as a soak that passes.
"""

from __future__ import annotations

import math
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from soakkit.accounting import Failure, account  # noqa: E402
from soakkit.enqueuer import Enqueuer  # noqa: E402
from soakkit.faults import Injector, Window  # noqa: E402
from soakkit.fleet import CONFIGS, Seen  # noqa: E402
from soakkit.leaks import key_problems, rss_verdicts  # noqa: E402
from soakkit.ledger import Enqueued, Run, end_event, start_event, worker_pid  # noqa: E402
from soakkit.monitor import Census, key_pattern  # noqa: E402
from soakkit.recovery import resume_times  # noqa: E402
from soakkit.wfcheck import judge  # noqa: E402
from soakkit.wfread import Seen as WfSeen  # noqa: E402
from soakkit.workflow import Made, Tracked  # noqa: E402

from pyresqueworker import BatchStatus  # noqa: E402

ASYNC = next(c for c in CONFIGS if c.name == "a-asyncio")
WID = "vm:100-1:soak_a,soak_a_big"


def job(job_id: str, kind: str = "work", expect: str = "ok", status: str = "accepted",
        fails: int = 0, attempts: int = 0) -> Enqueued:
    return Enqueued(job_id, "a", kind, "SoakWork", expect, status, 0.0, fails=fails,
                    attempts=attempts)


def run(job_id: str, start: float, end: float | None, outcome: str | None = "ok",
        worker_id: str = WID) -> Run:
    return Run(job_id, f"t{start}", worker_id, worker_pid(worker_id), start, end, outcome)


def test_events_and_worker_ids_parse() -> None:
    assert start_event("a1", "tok", WID, 7, 1.5).split("|")[:4] == ["S", "a1", "tok", WID]
    assert end_event("a1", "tok", "ok", 2.0).startswith("E|a1|tok|ok|")
    assert worker_pid("host:4242:q") == worker_pid("host:4242-3:q,r") == 4242


def test_a_job_without_a_success_or_a_failure_entry_is_lost() -> None:
    jobs = {"ok": job("ok"), "gone": job("gone"), "never": job("never", status="refused"),
            "maybe": job("maybe", status="uncertain")}
    acc = account(jobs, {"ok": [run("ok", 1, 2)]}, {}, [])
    assert acc.lost == ["gone"]
    assert acc.wrong == {}


def test_failing_kinds_need_one_entry_with_the_policys_attempts() -> None:
    jobs = {"doomed": job("doomed", expect="fail", attempts=3),
            "cut": job("cut", expect="fail", attempts=3),
            "flaky": job("flaky", fails=1)}
    runs = {j: [run(j, 1, 2, "fail"), run(j, 3, 4, "fail"), run(j, 5, 6, "fail")]
            for j in ("doomed", "cut")}
    runs["flaky"] = [run("flaky", 1, 2, "fail")]
    failures = {"doomed": [Failure("soakkit.jobs.SoakError", 3)],
                "cut": [Failure("soakkit.jobs.SoakError", 0)],  # retry never scheduled
                "flaky": [Failure("soakkit.jobs.SoakError", 0)]}
    acc = account(jobs, runs, failures, [])
    assert set(acc.wrong) == {"cut", "flaky"}
    assert acc.lost == []


def test_a_poison_pill_is_quarantined_and_a_deduped_job_must_not_run() -> None:
    jobs = {"pill": job("pill"), "dup": job("dup", status="deduped")}
    acc = account(jobs, {"dup": [run("dup", 1, 2)]},
                  {"pill": [Failure("pyresqueworker.PoisonPill", 0)]}, [])
    assert acc.quarantined == ["pill"]
    assert acc.wrong == {"dup": "deduped but ran"}


def test_a_second_run_is_explained_by_a_kill_or_a_missing_end_only() -> None:
    victim = Seen(100, ASYNC, 0.0, killed_at=10.0)
    kill = Window("kill", "a", 10.0, 10.0, victim=victim)
    jobs = {j: job(j) for j in ("cut-short", "orphan", "before", "twice")}
    runs = {
        "cut-short": [run("cut-short", 9, None, None), run("cut-short", 11, 12)],
        # a --fork-per-job child forked before the kill starts its handler after it
        "orphan": [run("orphan", 10.2, 10.3), run("orphan", 10.4, 10.5, worker_id="vm:200:q")],
        "before": [run("before", 1, 2), run("before", 11, 12, worker_id="vm:200:q")],
        "twice": [run("twice", 20, 21, worker_id="vm:300:q"),
                  run("twice", 22, 23, worker_id="vm:300:q")],
    }
    acc = account(jobs, runs, {}, [kill])
    assert set(acc.duplicated) == set(jobs)
    assert set(acc.unexplained) == {"before", "twice"}


def test_resume_is_the_longest_wait_of_any_active_slot_and_of_the_replacement() -> None:
    other = "vm:300-1:soak_a,soak_a_big"
    runs = [run("x", t, t + 0.1, worker_id=other) for t in (8.0, 9.5, 12.0)]
    runs += [run("y", 8.0, None, None)]  # the victim's slot
    runs += [run("z", 10.5 + i / 10, 11, worker_id=f"vm:400-{i}:soak_a,soak_a_big")
             for i in range(ASYNC.slots)]
    seen = {100: Seen(100, ASYNC, 0.0, killed_at=10.0), 400: Seen(400, ASYNC, 10.0)}
    kill = Window("kill", "a", 10.0, 10.0, victim=seen[100])
    (resume,) = resume_times([kill], runs, seen)
    assert resume.slots == 1 + ASYNC.slots
    assert math.isclose(resume.seconds, 2.0)
    seen[400].first_seen = 9.0  # no replacement came
    (resume,) = resume_times([kill], runs, seen)
    assert resume.seconds == math.inf


def test_rss_is_judged_idle_to_idle_for_survivors() -> None:
    seen = {1: Seen(1, ASYNC, 0.0), 2: Seen(2, ASYNC, 0.0, killed_at=30.0)}
    samples = {1: [(t, 1000 + t) for t in range(0, 101)], 2: [(t, 1000) for t in range(0, 31)]}
    (verdict,) = rss_verdicts(samples, seen, baseline=20.0, end=100.0, warm=10.0)
    assert verdict.base_kb == 1020 and verdict.end_kb == 1100


def test_keys_must_drain_stay_per_slot_and_not_grow() -> None:
    assert key_pattern("resque:pyresque:unique:" + "ab" * 20) == "resque:pyresque:unique:<digest>"
    base = Census(0.0, Counter({"resque:stat:processed": 1, "resque:queues": 1}))
    end = Census(1.0, Counter({"resque:stat:processed": 1, "resque:queues": 1,
                               "resque:queue:soak_a": 1, "resque:something:new": 1,
                               "resque:failure-resque-retry:X:<digest>": 2}),
                 no_ttl=Counter({"resque:failure-resque-retry:X:<digest>": 1}),
                 workers=3, heartbeats=3)
    problems = {p.pattern for p in key_problems("a", base, end, live_slots=3)}
    assert problems == {"resque:queue:soak_a", "resque:something:new",
                        "resque:failure-resque-retry:X:<digest>"}


def test_a_short_soaks_first_round_still_has_time_for_a_failover() -> None:
    injector = Injector(None, None, random.Random(0), gap=(5.2, 6.0))  # type: ignore[arg-type]
    # Plenty of time: the shuffled order's next kind.
    assert injector._first_round(["kill", "cut", "failover"], budget=60.0) == "kill"
    # Taking it would leave the failover (12 s at most) no time: the failover first.
    assert injector._first_round(["kill", "cut", "failover"], budget=18.0) == "failover"


class _Conn:
    """What the enqueuer reads of its connection: where it is, and close()."""

    def __init__(self, port: int) -> None:
        self.connection = type("Connection", (), {"port": port})()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_enqueuer_leaves_a_master_that_sentinel_no_longer_names() -> None:
    master = [1]
    load = Enqueuer("b", lambda: None, None, random.Random(0), depth=3,  # type: ignore[arg-type]
                    wait_replicas=True, master=lambda: master[0])
    conn = _Conn(1)
    load._conn = load._client = conn  # type: ignore[assignment]
    load._follow_master()
    assert load._conn is conn  # still the master
    master[0], load._followed = 2, 0.0  # a failover promoted the replica
    load._follow_master()
    assert load._conn is None and conn.closed


def _made(kind: str, token: str, ids: list[str], group: str = "a", status: str = "accepted",
          failing: bool = False) -> Made:
    jobs = [Tracked(i, "SoakWfStep", "fail" if failing and kind == "batch" and n == 0 else "ok",
                    [i, 4]) for n, i in enumerate(ids)]
    if failing and kind == "chain":
        jobs[0].design = "fail"
    return Made(kind, group, token, 0.0, jobs, status, f"B{token}", failing)


def _batch_status(made: Made, pending: int = 0) -> BatchStatus:
    states = {j.job_id: "failed" if j.design == "fail" else "succeeded" for j in made.jobs}
    for job_id in list(states)[:pending]:
        states[job_id] = "pending"
    failed = sum(1 for s in states.values() if s == "failed")
    return BatchStatus(made.batch_id, len(states), pending, len(states) - pending - failed,
                       failed, 0.0, None if pending else 1.0, jobs=states)


def _succeeded(seen: WfSeen, made: Made, runs: dict[str, list[Run]], at: float = 1.0) -> None:
    for job in made.jobs:
        if job.design != "fail":
            seen.records[job.job_id] = {"state": "succeeded", "result": f'["{job.job_id}", 4]'}
            runs[job.job_id] = [run(job.job_id, at, at + 0.1)]


def test_workflow_callbacks_must_come_exactly_once_and_batches_complete() -> None:
    good, twice = _made("batch", "a-1", ["w1", "w2"]), _made("batch", "a-2", ["w3"])
    failing = _made("batch", "a-3", ["w4", "w5"], failing=True)
    stuck, unsure = _made("batch", "a-4", ["w6"]), _made("batch", "a-5", ["w7"], status="uncertain")
    seen, runs = WfSeen(), {}
    for made in (good, twice, failing):
        seen.batches[made.batch_id] = _batch_status(made)
        _succeeded(seen, made, runs)
    seen.batches[stuck.batch_id] = _batch_status(stuck, pending=1)
    seen.batches[unsure.batch_id] = None
    seen.callbacks.update({("success", "a-1"): 1, ("complete", "a-1"): 1, ("success", "a-2"): 1,
                           ("complete", "a-2"): 2, ("complete", "a-3"): 1,
                           ("success", "a-3"): 1, ("complete", "a-9"): 1})
    verdict = judge([good, twice, failing, stuck, unsure], {"a": seen}, runs, {}, [], None, 0.0)
    assert verdict.duplicated == ["complete of a-2: 2 items"]
    assert verdict.missing == []
    assert sorted(verdict.unexpected) == ["complete of a-9 (group a): 1 items",
                                          "success of a-3 (failed 1)"]
    assert [w.split(":")[0] for w in verdict.wrong_batches] == ["a-4"]
    assert [u.split(":")[0] for u in verdict.uncertain] == ["batch a-5"]
    assert verdict.callbacks == Counter({"expected": 5, "seen": 7})
    rows = {name: ok for name, _, _, ok in verdict.criteria()}
    assert not rows["batch callbacks"] and not rows["workflow batches"]


def test_workflow_dependents_never_start_before_their_dependency_succeeded() -> None:
    early, canceled = _made("chain", "a-1", ["c1", "c2", "c3"]), _made(
        "chain", "a-2", ["d1", "d2", "d3"], failing=True)
    seen, runs = WfSeen(), {}
    _succeeded(seen, early, runs)
    runs["c2"] = [run("c2", 1.05, 1.2)]  # before c1's end (1.1)
    runs["c3"] = [run("c3", 1.3, 1.4)]
    runs["d1"] = [run("d1", 1.0, 1.1, "fail")]
    runs["d3"] = [run("d3", 2.0, 2.1)]
    for job in early.jobs:
        seen.api[job.job_id] = f'ok ["{job.job_id}", 4]'
    seen.api.update({"d1": "failed", "d2": "canceled", "d3": "succeeded"})
    seen.records.update({"d1": {"state": "failed"}, "d2": {"state": "canceled"},
                         "d3": {"state": "succeeded"}})
    verdict = judge([early, canceled], {"a": seen}, runs, {}, [], None, 0.0)
    assert [v.split(":")[0] for v in verdict.violations] == ["a-1", "a-2", "a-2", "a-2"]
    assert "c2 started at 1.050 s, before c1 first succeeded (1.100 s)" in verdict.violations[0]
    assert verdict.chains == Counter({"made": 2, "checked": 2})


def test_workflow_results_of_successes_are_kept_unless_a_failover_took_them() -> None:
    kept, lost = _made("single", "a-1", ["s1"]), _made("single", "a-2", ["s2"])
    wrong, never = _made("single", "a-3", ["s3"]), _made("single", "a-4", ["s4"])
    away = _made("single", "b-5", ["s5"], group="b")
    seen, other, runs = WfSeen(), WfSeen(), {}
    for made in (kept, lost, wrong):
        _succeeded(seen, made, runs)
    seen.records["s2"] = {"state": "queued"}
    seen.records["s3"]["result"] = '["s3", 5]'
    runs["s5"] = [run("s5", 10.0, 10.1)]  # across the failover below
    failover = Window("failover", "b", 11.0, 12.0)
    verdict = judge([kept, lost, wrong, never, away], {"a": seen, "b": other}, runs, {},
                    [failover], None, 0.0)
    assert [x.split(" ")[0] for x in verdict.lost] == ["s2"]
    assert [x.split(":")[0] for x in verdict.wrong_results] == ["s3"]
    assert [x.split(" ")[0] for x in verdict.never] == ["s4"]
    assert [x.split(" ")[0] for x in verdict.uncertain] == ["s5"]
    assert verdict.results["checked"] == 4
