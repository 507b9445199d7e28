"""Job observers (``observe``): a user's observer hears what the worker's own metrics, history
and log line hear — each job's start and its outcome — in thread and asyncio workers alike, and
an observer that raises changes nothing for the job or the others."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from worker_helpers import start_worker, wait_until

NS = "resque:"

OBSERVED_APP = '''
import asyncio
import json
import redis
from pyresqueworker import JobObserver, Retry, job, observe

_r = redis.Redis.from_url(__import__("os").environ["OBSERVED_REDIS"])

class Recorder(JobObserver):
    def job_started(self, job):
        _r.rpush("test:heard", json.dumps(["started", job.class_name, job.worker_id]))

    def job_finished(self, job, outcome):
        _r.rpush("test:heard", json.dumps(["finished", job.class_name, outcome.outcome,
                                           outcome.error, outcome.duration_s >= 0]))

class Broken(JobObserver):
    def job_finished(self, job, outcome):
        raise RuntimeError("a broken observer")

observe(Broken())
observe(Recorder())

@job("Fine")
async def fine():
    await asyncio.sleep(0)

@job("Boom")
async def boom():
    raise ValueError("no good")

@job("Again", retry=Retry(max=2, backoff="fixed", base=60))
async def again():
    raise ValueError("try later")
'''


@pytest.fixture
def workers(redis_url: str) -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in started:
        proc.cleanup()


def heard(r: redis.Redis) -> list[list[Any]]:
    return [json.loads(x) for x in r.lrange("test:heard", 0, -1)]


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_a_user_observer_hears_each_start_and_outcome(
    execution: str, r: redis.Redis, redis_url: str, tmp_path: Path, workers: list[Any]
) -> None:
    app = tmp_path / "observed_app.py"
    app.write_text(OBSERVED_APP)
    for class_name in ("Fine", "Boom", "Again"):
        r.rpush(NS + "queue:q", json.dumps({"class": class_name, "args": []}))
    proc = start_worker(redis_url, "--app", str(app), "--redis", redis_url, "--queues", "q",
                        "--interval", "0.1", "--execution", execution, defaults=False,
                        env={"OBSERVED_REDIS": redis_url})
    workers.append(proc)
    got = wait_until(lambda: heard(r) if len(heard(r)) >= 6 else None, "six events", 15.0)
    started = [e for e in got if e[0] == "started"]
    finished = {e[1]: e[2:] for e in got if e[0] == "finished"}
    assert sorted(e[1] for e in started) == ["Again", "Boom", "Fine"]
    assert all(e[2].endswith(":q") for e in started)  # the slot's Resque worker id
    assert finished == {
        "Fine": ["success", None, True],
        "Boom": ["failure", "ValueError: no good", True],
        "Again": ["retried", "ValueError: try later", True],
    }
    # The broken observer, listed first, was logged and hid nothing from the one after it.
    assert "a broken observer" in proc.log()
    assert "job done" in proc.log()  # the worker's own log line is an observer too
    assert r.llen(NS + "failed") == 1  # only Boom: Again was scheduled to retry
    assert proc.stop(signal.SIGTERM) == 0
