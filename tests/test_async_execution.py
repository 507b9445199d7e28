"""Asyncio execution mode (``--execution asyncio``): slots as tasks on one event loop.

Real ``redis-server``, real ``pyresque-work`` subprocesses. The handlers live in an app file
this module writes (:data:`APP`): ``RelRecord`` is an ``async def`` version of the reliability
suite's job (same ``rel:done`` / ``rel:runs`` ledger, so its ``push_records`` and ``account``
helpers apply), the others sleep, hold, time out or run sync. Waits poll conditions against
deadlines; nothing asserts a tight timing.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from apps.reliability_jobs import account, drained, held_jobs, push_records, worker_leftovers
from test_reliability_redis_outage import DurableRedis
from worker_helpers import (
    NS,
    count_commands,
    failures,
    start_worker,
    wait_failures,
    wait_until,
)

APP = '''
import asyncio, json, os, threading, time
import redis, redis.asyncio
from pyresqueworker import current_job, job

_clients = {}

def _client():
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5)
    return _clients[loop]

async def _write(build):
    deadline = time.monotonic() + 30
    while True:
        try:
            async with _client().pipeline(transaction=True) as pipe:
                build(pipe)
                await pipe.execute()
            return
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)

@job("RelRecord")
async def rel_record(job_id, sleep_ms=0):
    await asyncio.sleep(sleep_ms / 1000)
    await _write(lambda p: (p.sadd("rel:done", job_id), p.hincrby("rel:runs", job_id, 1)))

@job("ASleep")
async def asleep(seconds, tag=""):
    running, _ = current_job()
    started = time.time()
    await asyncio.sleep(seconds)
    line = json.dumps({"tag": tag, "start": started, "end": time.time(),
                       "worker": running.worker_id, "thread": threading.current_thread().name})
    await _write(lambda p: p.rpush("test:ran", line))

@job("ANap")
async def anap(seconds):
    await asyncio.sleep(seconds)

@job("ATimeout", timeout=0.3)
async def atimeout(seconds):
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        redis.Redis.from_url(os.environ["REDIS_URL"]).rpush("test:cancelled", "yes")
        raise

@job("SyncRecord")
def sync_record(tag):
    line = json.dumps({"tag": tag, "thread": threading.current_thread().name,
                       "worker": current_job()[0].worker_id})
    redis.Redis.from_url(os.environ["REDIS_URL"]).rpush("test:ran", line)
'''
ASYNC_ONLY_APP = '''
import asyncio
from pyresqueworker import job

@job("ANap")
async def anap(seconds):
    await asyncio.sleep(seconds)
'''


@pytest.fixture
def app(tmp_path: Path) -> str:
    path = tmp_path / "async_jobs_app.py"
    path.write_text(APP)
    return str(path)


@pytest.fixture
def workers(redis_url: str) -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in started:
        proc.cleanup()


def start(workers: list[Any], url: str, app: str, *args: str) -> Any:
    """An asyncio-mode worker on ``url`` with the module's app."""
    proc = start_worker(url, "--app", app, "--redis", url, "--execution", "asyncio",
                        "--interval", "0.1", *args, defaults=False)
    workers.append(proc)
    return proc


def push(r: redis.Redis, queue: str, class_name: str, args_list: list[list[Any]]) -> None:
    r.sadd(NS + "queues", queue)
    items = [json.dumps({"class": class_name, "args": args}) for args in args_list]
    for at in range(0, len(items), 1000):
        r.rpush(NS + "queue:" + queue, *items[at:at + 1000])


def ran(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange("test:ran", 0, -1)]


def worker_clients(r: redis.Redis, pid: int, baseline: set[str]) -> int:
    """Connections to Redis that were not there before the worker started."""
    return len({c["addr"] for c in r.client_list()} - baseline)


# -- running jobs -------------------------------------------------------------------------------


def test_async_jobs_run_concurrently_as_tasks(r: redis.Redis, redis_url: str, app: str,
                                              workers: list[Any]) -> None:
    push(r, "aq", "ASleep", [[0.2, f"s{i}"] for i in range(200)])
    proc = start(workers, redis_url, app, "--queues", "aq", "--concurrency", "200")
    done = wait_until(lambda: ran(r) if len(ran(r)) >= 200 else None, "200 async jobs", 30.0)
    # Run one after another they would take 40 s; as tasks most of them overlap.
    first_end = min(d["end"] for d in done)
    overlapping = sum(1 for d in done if d["start"] < first_end)
    assert overlapping >= 50, overlapping
    assert {d["thread"] for d in done} == {"asyncio-runtime"}  # all on the one loop thread
    assert len({d["worker"] for d in done}) >= 50  # each ran as its slot's Resque worker
    assert "execution=asyncio" in proc.log()
    assert proc.stop(signal.SIGTERM) == 0
    assert worker_leftovers(r, "aq") == {}


def test_auto_picks_asyncio_when_every_handler_is_async(r: redis.Redis, redis_url: str,
                                                        tmp_path: Path, workers: list[Any]
                                                        ) -> None:
    only_async = tmp_path / "only_async_app.py"
    only_async.write_text(ASYNC_ONLY_APP)
    proc = start_worker(redis_url, "--app", str(only_async), "--redis", redis_url,
                        "--queues", "aq", "--concurrency", "3", defaults=False)
    workers.append(proc)
    proc.wait_registered(3)
    proc.wait_log("execution=asyncio")
    assert proc.stop(signal.SIGTERM) == 0


def test_sync_handlers_run_in_threads_in_asyncio_mode(r: redis.Redis, redis_url: str, app: str,
                                                      workers: list[Any]) -> None:
    push(r, "sq", "SyncRecord", [[f"t{i}"] for i in range(20)])
    proc = start(workers, redis_url, app, "--queues", "sq", "--concurrency", "8")
    done = wait_until(lambda: ran(r) if len(ran(r)) >= 20 else None, "20 sync jobs", 20.0)
    assert all(d["thread"].startswith("aio-job") for d in done), done
    assert proc.stop(signal.SIGTERM) == 0


def test_timeout_cancels_an_async_job(r: redis.Redis, redis_url: str, app: str,
                                      workers: list[Any]) -> None:
    push(r, "tq", "ATimeout", [[30]])
    proc = start(workers, redis_url, app, "--queues", "tq", "--concurrency", "4")
    entry = wait_failures(r, 1, 10.0)[0]
    assert entry["exception"] == "pyresqueworker.JobTimeout"
    assert "timeout of 0.3s" in entry["error"]
    wait_until(lambda: r.llen("test:cancelled") == 1, "the job to see its cancel")
    proc.wait_log("outcome=timeout")
    assert proc.stop(signal.SIGTERM) == 0


def test_bad_payload_and_unknown_class_fail_once_each(r: redis.Redis, redis_url: str, app: str,
                                                      workers: list[Any]) -> None:
    r.sadd(NS + "queues", "bq")
    r.rpush(NS + "queue:bq", b"not json at all", json.dumps({"class": "NoSuchJob", "args": []}))
    proc = start(workers, redis_url, app, "--queues", "bq", "--concurrency", "16")
    wait_failures(r, 2, 10.0)
    time.sleep(0.5)  # nothing more may come
    found = sorted(entry["exception"] for entry in failures(r))
    assert found == ["NameError", "Resque::Helpers::DecodeException"]
    assert int(r.get(NS + "stat:failed") or 0) == 2
    assert proc.stop(signal.SIGTERM) == 0


# -- what Redis sees ----------------------------------------------------------------------------


def test_slots_are_registered_resque_workers_with_heartbeats(r: redis.Redis, redis_url: str,
                                                            app: str, workers: list[Any]) -> None:
    proc = start(workers, redis_url, app, "--queues", "hq", "--concurrency", "50",
                 "--heartbeat-interval", "0.5")
    ids = proc.wait_registered(50)
    beats = {f.decode() for f in r.hkeys(NS + "workers:heartbeat")}
    assert set(ids) <= beats
    assert all(r.exists(NS + f"worker:{wid}:started") for wid in ids)
    push(r, "hq", "ANap", [[2.0]] * 50)

    def held() -> list[bytes]:
        found = held_jobs(r)
        return found if len(found) == 50 else []

    for key in wait_until(held, "50 worker keys holding running jobs", 10.0):
        value = json.loads(r.get(key) or b"{}")
        assert value["queue"] == "hq" and value["payload"]["class"] == "ANap"
    assert proc.stop(signal.SIGTERM) == 0


def test_connections_stay_few_at_concurrency_500(r: redis.Redis, redis_url: str, app: str,
                                                 workers: list[Any]) -> None:
    baseline = {c["addr"] for c in r.client_list()}
    proc = start(workers, redis_url, app, "--queues", "cq", "--concurrency", "500",
                 "--connections", "4")
    proc.wait_registered(500)
    push(r, "cq", "ANap", [[1.0]] * 1500)
    wait_until(lambda: len(held_jobs(r)) >= 400, "most slots busy", 15.0)
    busiest = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        busiest = max(busiest, worker_clients(r, proc.pid, baseline))
        time.sleep(0.1)
    # 4 claim connections, the process's own, one queue watcher, two for rare sync paths.
    assert busiest <= 4 + 4, busiest
    wait_until(lambda: drained(r, "cq"), "the queue to drain", 30.0)
    assert proc.stop(signal.SIGTERM) == 0


def test_idle_process_sends_few_commands_whatever_the_concurrency(
        r: redis.Redis, redis_url: str, app: str, workers: list[Any]) -> None:
    # (--no-time-series: the fleet's once-a-minute chart sample could fall into the window)
    proc = start(workers, redis_url, app, "--queues", "iq,iq2", "--concurrency", "1000",
                 "--no-time-series")
    proc.wait_registered(1000)
    time.sleep(1.0)  # the first claims of every slot are over
    sent, _ = count_commands(redis_url, 3.0)
    assert sum(sent.values()) <= 15, sent
    push(r, "iq2", "ANap", [[0.01]] * 300)  # a sleeping process still wakes for a burst
    wait_until(lambda: drained(r, "iq2"), "the burst to be taken", 10.0)
    assert proc.stop(signal.SIGTERM) == 0


def test_concurrency_10000_registers_within_seconds(r: redis.Redis, redis_url: str, app: str,
                                                    workers: list[Any]) -> None:
    proc = start(workers, redis_url, app, "--queues", "kq", "--concurrency", "10000")
    ids = proc.wait_registered(10000, timeout=20.0)
    assert len(ids) == 10000
    push(r, "kq", "ANap", [[0.05]] * 5000)
    wait_until(lambda: drained(r, "kq"), "5000 jobs", 30.0)
    assert proc.stop(signal.SIGTERM, timeout=60.0) == 0
    assert not r.scard(NS + "workers")


def test_limits_are_one_line_each(redis_url: str, app: str) -> None:
    for args, text in [
        (("--execution", "threads", "--concurrency", "2000"), "needs --execution asyncio"),
        (("--execution", "asyncio", "--fork-per-job"), "--fork-per-job cannot be combined"),
    ]:
        proc = start_worker(redis_url, "--app", app, "--queues", "q", *args)
        try:
            assert proc.wait_exit(20.0) == 2
            lines = proc.log().strip().splitlines()
            assert len(lines) == 1 and text in lines[0], lines
        finally:
            proc.cleanup()


def test_pause_and_resume(r: redis.Redis, redis_url: str, app: str, workers: list[Any]) -> None:
    proc = start(workers, redis_url, app, "--queues", "pq", "--concurrency", "20")
    proc.wait_registered(20)
    proc.send(signal.SIGUSR2)
    proc.wait_log("pausing job processing")
    push(r, "pq", "ANap", [[0.01]] * 30)
    time.sleep(0.5)
    assert r.llen(NS + "queue:pq") == 30  # paused: nothing taken
    proc.send(signal.SIGCONT)
    wait_until(lambda: drained(r, "pq"), "the queue to drain after CONT", 10.0)
    assert proc.stop(signal.SIGTERM) == 0


# -- no job lost --------------------------------------------------------------------------------


def test_term_under_load_loses_nothing(r: redis.Redis, redis_url: str, app: str,
                                       workers: list[Any]) -> None:
    ids = [f"t{i}" for i in range(2000)]
    # Every 10th job outlives the 0.3 s shutdown timeout, so TERM must give it back.
    push_records(r, "term", ids, sleep_ms=lambda i: 2000 if i % 10 == 0 else 5 + i % 20)
    args = ("--queues", "term", "--concurrency", "200", "--shutdown-timeout", "0.3")
    first = start(workers, redis_url, app, *args)
    wait_until(lambda: r.scard("rel:done") >= 300, "progress", 20.0)
    assert first.stop(signal.SIGTERM) == 0
    assert "outcome=requeued" in first.log()
    missing = set(ids) - account(r, ids).done - {
        json.loads(x)["args"][0] for x in r.lrange(NS + "queue:term", 0, -1)}
    assert missing == set()
    assert not held_jobs(r)
    last = start(workers, redis_url, app, *args)
    wait_until(lambda: drained(r, "term"), "the queue to drain", 30.0)
    assert last.stop(signal.SIGTERM) == 0
    result = account(r, ids)
    assert result.lost == [] and result.failed == {}
    assert worker_leftovers(r, "term") == {}


def test_kill_9_under_load_loses_nothing(r: redis.Redis, redis_url: str, app: str,
                                         workers: list[Any]) -> None:
    ids = [f"k{i}" for i in range(2000)]
    push_records(r, "kill", ids, sleep_ms=lambda i: 50 + i % 100)
    args = ("--queues", "kill", "--concurrency", "300", "--heartbeat-interval", "0.5",
            "--prune-after", "2")
    victim = start(workers, redis_url, app, *args)
    wait_until(lambda: r.scard("rel:done") >= 300, "progress", 20.0)
    wait_until(lambda: len(held_jobs(r)) >= 100, "many jobs in flight", 10.0)
    victim.kill()
    assert held_jobs(r)  # the dead worker's jobs are in its worker keys, nowhere else
    last = start(workers, redis_url, app, *args)  # same host: recovers the dead pid's jobs
    wait_until(lambda: drained(r, "kill") and r.scard(NS + "workers") == 300,
               "recovery and drain", 40.0)
    assert last.stop(signal.SIGTERM) == 0
    result = account(r, ids)
    assert result.lost == [] and result.failed == {}
    assert worker_leftovers(r, "kill") == {}


def test_redis_restart_mid_run_loses_nothing(workers: list[Any], app: str) -> None:
    durable = DurableRedis()
    try:
        r = durable.client()
        ids = [f"o{i}" for i in range(3000)]
        push_records(r, "outage", ids, sleep_ms=lambda i: 1 + i % 3)
        proc = start(workers, durable.url, app, "--queues", "outage", "--concurrency", "100",
                     "--heartbeat-interval", "0.5", "--prune-after", "5")
        wait_until(lambda: r.scard("rel:done") >= 500, "progress", 20.0)
        r.close()
        durable.shutdown()
        time.sleep(1.0)
        durable.start()
        r = durable.client()
        wait_until(lambda: drained(r, "outage"), "the queue to drain after the restart", 40.0)
        assert proc.proc.poll() is None, proc.log()
        log = proc.log()
        assert "redis unavailable, retrying" in log and "redis reachable again" in log
        assert proc.stop(signal.SIGTERM) == 0
        result = account(r, ids)
        assert result.lost == [] and result.failed == {}, result.summary()
        assert worker_leftovers(r, "outage") == {}
        r.close()
    finally:
        durable.close()
