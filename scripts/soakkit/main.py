"""One soak from start to verdict (``scripts/soak.py``).

Phases: start the servers and the workers; **warm-up** (load, no faults); drain, then the
*baseline* (key census, RSS); **faults** (load and the seeded fault schedule, the last stretch
quiet); drain with a deadline; the *end* (keys settled, RSS); the verdict. Every process the soak
starts is stopped on the way out, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

from soakkit import ledger, phases, wfcheck, wfread
from soakkit.accounting import Failure, account, read_failures
from soakkit.enqueuer import Enqueuer
from soakkit.faults import FAULT_KINDS, Injector
from soakkit.fleet import CONFIGS, Fleet
from soakkit.leaks import KeyProblem, rss_verdicts
from soakkit.monitor import Census, RssSampler
from soakkit.recovery import resume_times
from soakkit.report import Result, render
from soakkit.ruby import RubyWorker
from soakkit.servers import GROUPS, Servers
from soakkit.workflow import WorkflowLoad

__all__ = ["main"]

TAIL = 6.0  # quiet seconds at the end of the fault phase: the last fault's resume is measured


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="soak.py", description="Mixed load under random faults; exits 1 unless every "
        "criterion holds (see docs/reliability.md#soak).")
    parser.add_argument("--seconds", type=float, default=1800.0,
                        help="seconds of load, warm-up included (default: 1800)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the job mix and the fault schedule (default: random)")
    parser.add_argument("--warm-up", type=float, default=None,
                        help="seconds of load before the baseline (default: a tenth of "
                        "--seconds, 10 to 120)")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS),
                        help="the fault kinds to inject, comma-separated (default: all: "
                        f"{','.join(FAULT_KINDS)})")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the worker logs (their directory is printed)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the results, RSS series included, to this file")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    if args.warm_up is None:
        args.warm_up = min(120.0, max(10.0, args.seconds / 10))
    args.faults = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = sorted(set(args.faults) - set(FAULT_KINDS))
    if unknown or not args.faults:
        parser.error(f"--faults: unknown {', '.join(unknown) or 'empty'}")
    if args.seconds < args.warm_up + 40:
        parser.error(f"--seconds must leave at least 40 s of faults after a "
                     f"{args.warm_up:.0f} s warm-up")
    return args


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"== soak: seed {args.seed}, {args.seconds:.0f} s "
          f"(replay: scripts/soak.py --seconds {args.seconds:g} --seed {args.seed})",
          flush=True)
    try:
        result = Soak(args).run()
    except KeyboardInterrupt:
        print("== soak interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(render(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    return 0 if result.passed else 1


class Soak:
    """One run: :meth:`run` goes through the phases and returns what it measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        long_run = args.seconds >= 300
        self.gap = (8.0, 25.0) if long_run else (5.2, 6.0)
        self.drain_deadline = 180.0 if long_run else 60.0
        self.drains: dict[str, float] = {}
        self.exits: dict[str, object] = {}

    def _say(self, text: str) -> None:
        print(f"   {time.strftime('%H:%M:%S')} {text}", flush=True)

    def run(self) -> Result:
        began = time.monotonic()
        with ExitStack() as stack:
            log_dir = Path(tempfile.mkdtemp(prefix="pyresque-soak-logs-"))
            if not self.args.keep_logs:
                stack.callback(shutil.rmtree, log_dir, True)
            servers = Servers()
            stack.callback(servers.close)
            fleet = Fleet({g: servers.worker_url(g) for g in GROUPS}, servers.ledger_url,
                          log_dir)
            stack.callback(lambda: self.exits.update(fleet.close()))
            fleet.start()
            took = phases.wait_registered(servers, fleet)
            self._say(f"{len(CONFIGS)} worker configurations up in {took:.1f} s; logs in "
                      f"{log_dir}")
            sampler = RssSampler(fleet)
            sampler.start()
            stack.callback(sampler.stop)
            ledger_conn = servers.ledger_client()
            stack.callback(ledger_conn.close)
            ruby = self._ruby(servers, log_dir)
            stack.callback(ruby.stop)
            flows = [self._workflow(servers, ledger_conn, g, ruby.running) for g in GROUPS]
            loads = [self._enqueuer(servers, ledger_conn, g) for g in GROUPS] + flows
            for load in loads:
                stack.callback(load.stop)

            base_keys, baseline = self._warm_up(servers, sampler, loads)
            injector = Injector(servers, fleet, self.rng, self.gap, self.args.faults)
            t0 = self._faults(injector, loads)
            end_keys, problems, wf_seen = self._end(servers, fleet, base_keys, flows)
            sampler.sample()
            end = time.time()

            runs = ledger.read_runs(ledger_conn)
            failures = self._failures(servers)
            accounting = account(ledger.read_expected(ledger_conn), runs, failures,
                                 injector.windows)
            workflow = wfcheck.judge((m for f in flows for m in f.made), wf_seen, runs,
                                     failures, injector.windows, ruby, t0)
            resumes = resume_times(injector.windows,
                                   (r for rs in runs.values() for r in rs), fleet.seen)
            rss = rss_verdicts(sampler.samples, fleet.seen, baseline, end, self.args.warm_up)
            series = {pid: (fleet.seen[pid], sampler.series(pid))
                      for pid in sampler.samples if pid in fleet.seen}
            sampler.stop()
            for load in loads:
                load.stop()
            self.exits.update(fleet.close())  # before the logs are read (and removed)
            signs = phases.log_signs(fleet)
        kinds: Counter[tuple[str, str]] = Counter()
        errors: Counter[str] = Counter()
        for load in loads:
            kinds.update(load.counts)
            errors.update(load.errors)
        return Result(self.args.seed, self.args.seconds, self.args.warm_up,
                      time.monotonic() - began, self.drains, kinds, accounting,
                      injector.windows, resumes, rss, problems,
                      {g: (base_keys[g], end_keys[g]) for g in GROUPS}, self.exits, signs, t0,
                      errors, [b for load in loads for b in load.bugs], series, workflow)

    def _warm_up(self, servers: Servers, sampler: RssSampler,
                 loads: list[Enqueuer]) -> tuple[dict[str, Census], float]:
        """Load without faults, drain, then the baseline: key census and RSS (idle)."""
        self._load(loads, True)
        time.sleep(self.args.warm_up)
        self._load(loads, False)
        self.drains["warm-up"] = phases.drain(servers, self.drain_deadline)
        sampler.sample()
        baseline = time.time()
        base_keys = phases.census(servers)
        self._say(f"baseline after {self.args.warm_up:.0f} s of warm-up (drained in "
                  f"{self.drains['warm-up']:.1f} s); faults for "
                  f"{self.args.seconds - self.args.warm_up:.0f} s")
        return base_keys, baseline

    def _faults(self, injector: Injector, loads: list[Enqueuer]) -> float:
        """Load and the fault schedule for the rest of ``--seconds``; returns its start."""
        t0 = time.time()
        until = t0 + self.args.seconds - self.args.warm_up
        for load in loads:
            load.warming = False
        self._load(loads, True)
        chaos = threading.Thread(target=injector.run, args=(until, TAIL), daemon=True)
        chaos.start()
        try:
            while chaos.is_alive() and time.time() < until:
                chaos.join(timeout=min(1.0, max(0.01, until - time.time())))
            time.sleep(max(0.0, until - time.time()))
        finally:
            injector.halt.set()
            chaos.join(60)  # a fault under way is finished and healed
        # The last fault's resume is measured on load: keep it up TAIL s past its end.
        last_end = max((w.end for w in injector.windows), default=0.0)
        time.sleep(max(0.0, min(TAIL, last_end + TAIL - time.time())))
        self._load(loads, False)
        self._say(f"{len(injector.windows)} faults done; draining")
        return t0

    def _end(self, servers: Servers, fleet: Fleet, base_keys: dict[str, Census],
             flows: list[WorkflowLoad]
             ) -> tuple[dict[str, Census], list[KeyProblem], dict[str, wfread.Seen]]:
        """Drain with a deadline, read the workflow load's state, then wait for the keys to
        settle (dead workers pruned)."""
        self.drains["end"] = phases.drain(servers, self.drain_deadline)
        wf_seen: dict[str, wfread.Seen] = {}
        for flow in flows:
            conn = servers.data(flow.group)
            try:
                wf_seen[flow.group] = wfread.collect(conn, flow.group, flow.made)
            finally:
                conn.close()
        end_keys, problems, settle = phases.settle_keys(servers, fleet, base_keys, 30.0)
        if not end_keys:
            problems = [KeyProblem("*", "(no census)", 0, 0, "Redis did not answer")]
            end_keys = base_keys
        self._say(f"drained in {self.drains['end']:.1f} s, batches done "
                  f"{max(s.waited for s in wf_seen.values()):.1f} s later, keys settled in "
                  f"{settle:.1f} s; reading the ledger")
        return end_keys, problems, wf_seen

    @staticmethod
    def _failures(servers: Servers) -> dict[str, list[Failure]]:
        failures: dict[str, list[Failure]] = {}
        for group in GROUPS:
            conn = servers.data(group)
            try:
                failures.update(read_failures(conn))
            finally:
                conn.close()
        return failures

    def _enqueuer(self, servers: Servers, ledger_conn: Any, group: str) -> Enqueuer:
        slots = sum(c.slots * c.processes for c in CONFIGS if c.group == group)
        load = Enqueuer(group, lambda: servers.enqueue_client(group), ledger_conn,
                        random.Random(self.rng.random()), depth=3 * slots,
                        wait_replicas=group == "b",
                        master=servers.b_master_port if group == "b" else None)
        load.start()
        return load

    def _workflow(self, servers: Servers, ledger_conn: Any, group: str,
                  ruby: bool) -> WorkflowLoad:
        # A generator of its own: a seed replays the same base mix and faults as before.
        rng = random.Random(f"{self.args.seed}-workflow-{group}")
        flow = WorkflowLoad(group, lambda: servers.enqueue_client(group), ledger_conn, rng,
                            wait_replicas=group == "b",
                            master=servers.b_master_port if group == "b" else None,
                            ruby=ruby and group == "a")
        flow.start()
        return flow

    def _ruby(self, servers: Servers, log_dir: Path) -> RubyWorker:
        """The Ruby members' worker on group a's Redis (direct), or why there is none."""
        assert servers.a is not None
        ruby = RubyWorker(f"redis://127.0.0.1:{servers.a.port}/0", log_dir)
        if ruby.start():
            self._say("Ruby tracking worker up (tests/ruby/tracking_worker.rb)")
        else:
            self._say(f"Ruby members skipped: {ruby.skipped}")
        return ruby

    @staticmethod
    def _load(loads: list[Enqueuer], on: bool) -> None:
        for load in loads:
            (load.active.set if on else load.active.clear)()
