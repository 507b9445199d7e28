"""``pyresque-work --processes N``: a supervisor forks N worker processes and keeps them alive."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Callable

import pytest
import redis
from worker_helpers import (
    NS,
    RUBY_PROCLINE,
    WorkerProc,
    children,
    failures,
    keys_mentioning,
    ran,
    wait_failures,
    wait_ran,
    wait_started,
    wait_until,
)

from pyresqueworker.worker._supervisor import Supervisor

Spawn = Callable[..., WorkerProc]
HOST = socket.gethostname()


def registered_children(supervisor: WorkerProc, count: int) -> dict[int, str]:
    """{child pid: its worker id} once ``count`` live children have all registered."""
    def ready() -> dict[int, str] | None:
        if supervisor.proc.poll() is not None:
            raise AssertionError(f"supervisor exited:\n{supervisor.log()}")
        found = {pid: supervisor.ids(pid) for pid in children(supervisor.pid)}
        if len(found) == count and all(len(ids) == 1 for ids in found.values()):
            return {pid: ids[0] for pid, ids in found.items()}
        return None

    return wait_until(ready, f"{count} registered worker processes", timeout=15)


def all_worker_keys(r: redis.Redis) -> list[bytes]:
    return [k for k in r.keys(NS + "*") if b"worker:" in k or b":" + HOST.encode() in k]


def test_two_processes_work_jobs_side_by_side_and_stop_cleanly_on_term(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    supervisor = spawn_worker("--queues", "q", "--processes", "2")
    workers = registered_children(supervisor, 2)
    assert len(set(workers)) == 2
    for pid, worker_id in workers.items():
        assert worker_id == f"{HOST}:{pid}:q"  # each child is a plain Resque worker
        assert RUBY_PROCLINE.search(supervisor.title(pid)), supervisor.title(pid)
    assert supervisor.title().startswith("pyresque-supervisor")
    assert not RUBY_PROCLINE.search(supervisor.title())  # it is no worker: Ruby ignores it

    supervisor.send(signal.SIGUSR2)  # forwarded to every worker process
    for pid in workers:
        wait_until(lambda p=pid: "Paused" in supervisor.title(p), f"{pid} paused")
    supervisor.send(signal.SIGCONT)
    for pid in workers:
        wait_until(lambda p=pid: "Waiting for q" in supervisor.title(p), f"{pid} resumed")

    r.rpush(NS + "queue:q", '{"class":"Hold","args":["a"]}', '{"class":"Hold","args":["b"]}')
    started = wait_started(r, 2)
    assert {s["pid"] for s in started} == set(workers)  # one job in each process

    supervisor.send(signal.SIGTERM)  # forwarded: both finish their job, then stop
    supervisor.wait_log("shutdown requested")
    r.set("test:release:a", 1)
    r.set("test:release:b", 1)
    assert supervisor.wait_exit() == 0
    assert len(ran(r)) == 2 and failures(r) == []
    assert keys_mentioning(r, workers.values()) == {}
    assert r.smembers(NS + "workers") == set() and all_worker_keys(r) == []


@pytest.mark.parametrize("on_dead_worker", ["requeue", "fail"])
def test_a_killed_worker_process_is_replaced_and_its_job_recovered(
    r: redis.Redis, spawn_worker: Spawn, on_dead_worker: str
) -> None:
    supervisor = spawn_worker("--queues", "q", "--processes", "2",
                              "--on-dead-worker", on_dead_worker)
    workers = registered_children(supervisor, 2)
    r.rpush(NS + "queue:q", '{"class":"Hold","args":["killed"]}')
    [holder] = wait_started(r, 1)
    victim = holder["pid"]
    os.kill(victim, signal.SIGKILL)

    def replaced() -> dict[int, str] | None:
        now = registered_children(supervisor, 2)
        return now if victim not in now else None

    now = wait_until(replaced, "a replacement worker process")
    assert set(now) - set(workers) and set(now) & set(workers)  # one new pid, one old
    # The dead process's job is not left in its worker key: the supervisor recovers it at
    # once (it saw the child die), without waiting for a prune.
    r.set("test:release:killed", 1)
    if on_dead_worker == "requeue":
        [done] = wait_ran(r, 1)
        assert done["args"] == ["killed", 30] and done["pid"] in now
        assert failures(r) == []
    else:
        [entry] = wait_failures(r, 1)
        assert (entry["exception"], entry["worker"], entry["queue"]) == (
            "Resque::DirtyExit", workers[victim], "q")
        assert entry["payload"] == {"class": "Hold", "args": ["killed"]}
        assert ran(r) == [] and r.llen(NS + "queue:q") == 0
    assert keys_mentioning(r, [workers[victim]]) == {}

    assert supervisor.stop(signal.SIGTERM) == 0
    assert r.smembers(NS + "workers") == set() and r.hlen(NS + "workers:heartbeat") == 0
    assert all_worker_keys(r) == []


def test_draining_processes_exit_and_the_supervisor_with_them(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    r.rpush(NS + "queue:q", *[f'{{"class":"Record","args":[{i}]}}' for i in range(6)])
    supervisor = spawn_worker("--queues", "q", "--processes", "2", "--exit-on-complete")
    assert supervisor.wait_exit() == 0  # children that finish cleanly are not restarted
    assert sorted(d["args"][0] for d in ran(r)) == list(range(6))
    assert r.smembers(NS + "workers") == set() and all_worker_keys(r) == []


def test_a_child_its_job_kills_is_replaced_at_once_until_the_job_is_a_poison_pill(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    """A handler that segfaults kills the child running it. Each death is replaced at once
    (no restart delay: the child was working, and its job counts toward --max-recoveries),
    so the job ends as a poison pill after a few quick restarts and the job behind it runs,
    where a growing restart delay used to stall the queue for seconds."""
    # --max-jobs: a supervisor even with one process (it replaces recycled children).
    supervisor = spawn_worker("--app", "crash_jobs", "--queues", "q", "--processes", "1",
                              "--max-jobs", "1000", "--max-recoveries", "3")
    registered_children(supervisor, 1)
    pushed = time.monotonic()
    r.rpush(NS + "queue:q", '{"class":"Segfault","args":["x"]}', '{"class":"Record","args":[1]}')
    [entry] = wait_failures(r, 1, timeout=30)
    assert entry["exception"] == "pyresqueworker.PoisonPill"
    assert entry["payload"] == {"class": "Segfault", "args": ["x"]}
    [done] = wait_ran(r, 1, timeout=30)
    took = time.monotonic() - pushed
    assert done["args"] == [1]
    assert r.llen("test:segfaults") == 4  # the first run and three recoveries
    restarts = [line for line in supervisor.log().splitlines()
                if "worker process died; restarting" in line]
    assert len(restarts) == 4, supervisor.log()
    assert all("held_job=True" in line and "restart_in_s=0.0" in line for line in restarts), (
        "\n".join(restarts))
    print(f"\nSEGFAULT x4 under a supervisor: the next job ran {took:.2f} s after the push")
    registered_children(supervisor, 1)  # a live replacement is registered
    assert supervisor.stop(signal.SIGTERM) == 0
    assert r.smembers(NS + "workers") == set() and all_worker_keys(r) == []


def test_a_child_that_dies_before_working_still_waits_a_growing_delay() -> None:
    supervisor = Supervisor(1, lambda: 0)
    supervisor.started_at[0] = 100.0
    assert [supervisor.next_restart_delay(0, 101.0) for _ in range(3)] == [0.5, 1.0, 2.0]
    # Dying with a job: replaced at once, and the crash loop's delays are forgotten.
    assert supervisor.next_restart_delay(0, 101.0, held_job=True) == 0.0
    assert supervisor.next_restart_delay(0, 101.0) == 0.5
