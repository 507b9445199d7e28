"""Job timeouts, --fork-per-job isolation, and recycling by job count or memory."""

from __future__ import annotations

import signal
from typing import Callable

import pytest
import redis
from worker_helpers import NS, WorkerProc, failures, wait_failures, wait_until

Spawn = Callable[..., WorkerProc]
APP = ("--app", "limit_jobs")


def push(r: redis.Redis, queue: str, *items: str) -> None:
    r.rpush(NS + "queue:" + queue, *items)


def test_soft_timeout_interrupts_busy_python_code_in_thread_mode(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "t", *APP, "--job-timeout", "0.3")
    worker.wait_registered()
    push(r, "t", '{"class":"Spin","args":[30]}', '{"class":"MyClass","args":["after"]}')
    [entry] = wait_failures(r, 1)
    assert entry["exception"] == "pyresqueworker.JobTimeout"
    assert entry["error"] == "job exceeded its timeout of 0.3s"
    assert any("in `spin'" in line for line in entry["backtrace"])
    wait_until(lambda: r.get(NS + "stat:processed") == b"2", "the next job to run")
    assert "outcome=timeout" in worker.log()  # named as with --fork-per-job


@pytest.mark.parametrize("payload", [
    '{"class":"SlowAsync","args":[30]}',  # asyncio cancels the coroutine
    # ``::Jobs::CappedSpin`` is the handler ``Jobs::CappedSpin`` (as Resque.constantize has
    # it): its own timeout holds under that name too
    '{"class":"::Jobs::CappedSpin","args":[30]}',
])
def test_a_handler_timeout_ends_the_job_without_job_timeout(
    r: redis.Redis, spawn_worker: Spawn, payload: str
) -> None:
    worker = spawn_worker("--queues", "t", *APP)
    worker.wait_registered()
    push(r, "t", payload)
    [entry] = wait_failures(r, 1)
    assert (entry["exception"], entry["error"]) == (
        "pyresqueworker.JobTimeout", "job exceeded its timeout of 0.3s")


def test_fork_per_job_runs_each_job_in_a_child(r: redis.Redis, spawn_worker: Spawn) -> None:
    worker = spawn_worker("--queues", "t", *APP, "--fork-per-job")
    worker.wait_registered()
    push(r, "t", '{"class":"Pid","args":["a"]}', '{"class":"Pid","args":["b"]}')
    pids = wait_until(lambda: [int(p) for k in ("a", "b") for p in r.lrange(f"test:pid:{k}", 0, -1)]
                      if r.llen("test:pid:b") else None, "both jobs to run")
    assert worker.pid not in pids and len(set(pids)) == 2


def test_fork_per_job_hard_timeout_and_crashing_child_are_failures_not_dead_workers(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "t", *APP, "--fork-per-job", "--job-timeout", "0.5")
    [worker_id] = worker.wait_registered()
    push(r, "t", '{"class":"Nap","args":[60]}', '{"class":"SelfKill","args":[]}',
         '{"class":"MyClass","args":["survived"]}')
    timeout, crash = wait_failures(r, 2)
    assert timeout["exception"] == "pyresqueworker.JobTimeout"
    assert "timeout of 0.5s" in timeout["error"]
    assert crash["exception"] == "Resque::DirtyExit"
    assert crash["error"].startswith("Child process received unhandled signal pid ")
    assert crash["error"].endswith("SIGKILL (signal 9)")
    wait_until(lambda: r.get(NS + "stat:processed") == b"3", "the third job")
    assert r.sismember(NS + "workers", worker_id)
    assert "outcome=timeout" in worker.log()


def test_usr1_kills_the_job_child_and_the_worker_goes_on(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "t", *APP, "--fork-per-job")
    [worker_id] = worker.wait_registered()
    push(r, "t", '{"class":"Nap","args":[60]}')
    wait_until(lambda: r.exists(NS + "worker:" + worker_id), "the job to start")
    wait_until(lambda: worker.log().count("worker started") and "Processing" in worker.title(),
               "the child to be forked")
    worker.send(signal.SIGUSR1)
    [entry] = wait_failures(r, 1)
    assert entry["exception"] == "Resque::DirtyExit" and "SIGKILL" in entry["error"]
    assert worker.proc.poll() is None


def test_max_jobs_recycles_the_process_and_loses_nothing(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "t", "--max-jobs", "4", "--log-level", "info")
    push(r, "t", *[f'{{"class":"MyClass","args":[{i}]}}' for i in range(10)])
    wait_until(lambda: r.get(NS + "stat:processed") == b"10", "all ten jobs")
    assert worker.log().count("recycling worker process") >= 2
    assert failures(r) == []
    assert worker.proc.poll() is None  # the supervisor lives on
    worker.stop(signal.SIGTERM)
    assert r.scard(NS + "workers") == 0


def test_max_memory_recycles_a_process_over_the_limit(r: redis.Redis, spawn_worker: Spawn) -> None:
    worker = spawn_worker("--queues", "t", "--max-memory", "1")
    worker.wait_log("recycling worker process")
    first = worker.log().count("worker process started")
    wait_until(lambda: worker.log().count("worker process started") > first, "a replacement")
    assert "resident memory" in worker.log()
