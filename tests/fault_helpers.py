"""Workers against a Redis under fault, and the accounting every fault test ends with.

The workers run ``RelRecord`` jobs (tests/apps/reliability_jobs.py) that mark themselves done
in a *ledger*: the session's plain redis-server, apart from the Redis under test, so a fault
(out of memory, a failover, a cut) cannot touch the record of what ran. A :class:`FaultRun`
starts the workers, samples progress while the test injects its fault, and ends with
:meth:`FaultRun.verify`, which asserts what every fault test promises:

* 0 lost: every job id is done in the ledger, or has a failure entry;
* no dead thread: after the fault, a fresh batch reaches every registered slot of every
  worker (each ``stat:processed:<id>`` goes up), and no log shows a traceback;
* no live worker pruned: every slot of every live worker is still registered, with a
  heartbeat, and no log says another worker's prune removed it;

and it prints the figures (``FAULT <name>: lost=.. duplicate_runs=.. longest_stall_s=..``;
run with ``-s`` to see them): duplicates are reported, bounded only where a test says so.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import redis
from apps.reliability_jobs import DONE, RUNS, Accounting, push_records
from worker_helpers import WorkerProc, command, wait_until, worker_env

NS = "resque:"


class FaultRun:
    """The workers of one fault test, and the accounting of its jobs.

    ``worker_url`` is what the workers are given (a proxy, a Sentinel or cluster URL);
    ``data`` returns a client on the Redis that holds the queues *now* (after a failover, the
    new master); ``ledger`` is where the jobs record themselves.
    """

    def __init__(self, name: str, worker_url: str, data: Callable[[], redis.Redis],
                 ledger_url: str, *args: str, queue: str = "faults",
                 namespace: str = NS) -> None:
        self.name = name
        self.worker_url = worker_url
        self.data = data
        self.ledger_url = ledger_url
        self.ledger = redis.Redis.from_url(ledger_url)
        self.queue = queue
        self.ns = namespace
        self.args = ("--queues", queue, "--interval", "0.1", "--heartbeat-interval", "1",
                     "--prune-after", "10", "--namespace", namespace, *args)
        self.workers: list[WorkerProc] = []
        self.ids: list[str] = []
        self._samples: list[tuple[float, int]] = []
        self._sampling = threading.Event()
        self._sampler: Optional[threading.Thread] = None

    # -- workers -----------------------------------------------------------------------------

    def start(self, *extra: str, wait: bool = True) -> WorkerProc:
        argv = ["--app", "reliability_jobs", "--redis", self.worker_url, *self.args, *extra]
        env = worker_env(self.worker_url, {"REL_REDIS_URL": self.ledger_url})
        proc = WorkerProc(argv, env, self.ledger_url)
        self.workers.append(proc)
        if wait:
            self.wait_registered(proc)
        return proc

    def slots_of(self, proc: WorkerProc) -> list[str]:
        """The worker ids of ``proc`` registered in the data Redis."""
        members = [m.decode() for m in self.data().smembers(self.ns + "workers")]
        return sorted(m for m in members
                      if m.split(":")[1].split("-")[0] == str(proc.pid))

    def wait_registered(self, proc: WorkerProc, timeout: float = 20.0) -> list[str]:
        count = self.concurrency

        def ready() -> Optional[list[str]]:
            if proc.proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.proc.returncode}:\n{proc.log()}")
            try:
                found = self.slots_of(proc)
            except redis.RedisError:
                return None
            return found if len(found) >= count else None

        return wait_until(ready, f"{count} registered slots of {proc.pid}", timeout, 0.05)

    @property
    def concurrency(self) -> int:
        args = list(self.args)
        return int(args[args.index("--concurrency") + 1]) if "--concurrency" in args else 1

    # -- jobs -----------------------------------------------------------------------------

    def push(self, ids: Sequence[str], sleep_ms: Callable[[int], float] = lambda _i: 0) -> None:
        push_records(self.data(), self.queue, ids, sleep_ms, namespace=self.ns)

    def begin(self, ids: Sequence[str], sleep_ms: Callable[[int], float], workers: int = 2,
              until: int = 0, replicas: int = 0) -> None:
        """Queue ``ids`` (and wait until ``replicas`` replicas have them), start sampling and
        ``workers`` workers; return once ``until`` jobs are done (when a test injects its
        fault)."""
        self.push(ids, sleep_ms)
        if replicas:
            self.data().execute_command("WAIT", replicas, 5000)
        self.start_sampling()
        for _ in range(workers):
            self.start()
        wait_until(lambda: self.done_count() >= until, f"{until} jobs done", 60, 0.02)

    def done_count(self) -> int:
        return int(self.ledger.scard(DONE))

    def start_sampling(self) -> None:
        """Record (time, jobs done) every 20 ms, to find the longest stall."""
        def sample() -> None:
            while not self._sampling.is_set():
                self._samples.append((time.monotonic(), self.done_count()))
                time.sleep(0.02)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def longest_stall(self, total: int) -> float:
        """Longest time without a job finishing, while jobs were still to do."""
        longest, last_change, last_done = 0.0, None, -1
        for at, done in self._samples:
            if done != last_done:
                if last_change is not None:
                    longest = max(longest, at - last_change)
                last_change, last_done = at, done
            if done >= total:
                break
        return round(longest, 2)

    def accounting(self, ids: Sequence[str]) -> Accounting:
        done = {m.decode() for m in self.ledger.smembers(DONE)}
        runs = {k.decode(): int(v) for k, v in self.ledger.hgetall(RUNS).items()}
        failed: dict[str, list[str]] = {}
        for raw in self.data().lrange(self.ns + "failed", 0, -1):
            entry = json.loads(raw)
            payload = entry.get("payload")
            if isinstance(payload, dict) and payload.get("class") == "RelRecord":
                failed.setdefault(str(payload["args"][0]), []).append(str(entry["exception"]))
        return Accounting(tuple(ids), done, failed, runs)

    def held(self) -> list[bytes]:
        data = self.data()
        return [k for k in data.keys(self.ns + "worker:*") if not k.endswith(b":started")]

    def wait_settled(self, ids: Sequence[str], timeout: float = 60.0) -> Accounting:
        """Wait until every job is done or failed and nothing is queued or held."""
        def settled() -> Optional[Accounting]:
            try:
                if self.data().llen(self.ns + "queue:" + self.queue) or self.held():
                    return None
                acc = self.accounting(ids)
            except redis.RedisError:
                return None
            return acc if not acc.lost else None

        try:
            return wait_until(settled, f"{len(ids)} jobs settled", timeout, 0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    # -- the promises -----------------------------------------------------------------------

    def verify(self, ids: Sequence[str], timeout: float = 60.0) -> Accounting:
        """Assert 0 lost, no dead thread, no live worker pruned; print the figures."""
        acc = self.wait_settled(ids, timeout)
        self._sampling.set()
        assert not acc.lost, f"{len(acc.lost)} jobs lost: {acc.lost[:10]}\n{self.logs()}"
        live = [w for w in self.workers if w.proc.poll() is None]
        slots = {proc.pid: self.slots_of(proc) for proc in live}
        for proc in live:
            assert len(slots[proc.pid]) == self.concurrency, (
                f"worker {proc.pid} lost registered slots: {slots[proc.pid]}\n{quiet_log(proc)}")
        data = self.data()
        beats = {k.decode(): v for k, v in data.hgetall(self.ns + "workers:heartbeat").items()}
        every = [wid for wids in slots.values() for wid in wids]
        assert all(wid in beats for wid in every), f"heartbeats missing: {every} vs {beats}"
        # Batches of three 200 ms jobs per slot: the queue stays full while every slot is
        # busy, so each live slot takes some (each is woken by its process's doorbell, and an
        # idle one re-checks every 0.1 s anyway). A slot that missed a batch to bad luck gets
        # two more; a dead or wedged slot takes none of them.
        idle = list(every)
        for batch in range(3):
            before = {wid: self._processed(wid) for wid in idle}
            extra = [f"{self.name}-after-{batch}-{i}" for i in range(3 * max(1, len(every)))]
            self.push(extra, sleep_ms=lambda _i: 200)
            self.wait_settled(extra, timeout)
            idle = [wid for wid in idle if self._processed(wid) <= before[wid]]
            if not idle:
                break
        assert not idle, (f"slots that took no job after the fault: {idle}\n"
                          f"{self.logs(len(self.workers))}")
        for proc in self.workers:
            log = proc.log()
            for sign in ("Traceback", "Exception in thread", "slot thread ended",
                         "removed by another worker's prune"):
                assert sign not in log, f"worker {proc.pid} log shows {sign!r}:\n{quiet_log(proc)}"
        print(f"\nFAULT {self.name}: {acc.summary()} "
              f"longest_stall_s={self.longest_stall(len(ids))}")
        return acc

    def _processed(self, worker_id: str) -> int:
        return int(self.data().get(self.ns + f"stat:processed:{worker_id}") or 0)

    def logs(self, last: int = 3) -> str:
        """The last workers' logs without their per-job lines, for an assertion message."""
        return "\n".join(f"--- worker {p.pid}:\n{quiet_log(p)[-5000:]}"
                         for p in self.workers[-last:])

    def __enter__(self) -> FaultRun:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop (TERM) every worker, then remove their logs."""
        self._sampling.set()
        for proc in self.workers:
            if proc.proc.poll() is None:
                proc.send(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.proc.wait(10)
            except Exception:
                pass
            proc.cleanup()
        self.ledger.close()


def quiet_log(proc: WorkerProc) -> str:
    """A worker's log without its "job done" lines."""
    return "\n".join(line for line in proc.log().splitlines() if " job done " not in line)


def run_command(*args: str, env: Optional[dict[str, str]] = None,
                timeout: float = 60.0) -> Any:
    """Run ``pyresque-work`` to its end; returns the completed process (text output)."""
    import subprocess

    return subprocess.run(command() + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
