"""A worker process whose own code meets the unexpected keeps every slot working.

In-process (a :class:`WorkerProcess` on a thread, against the real test Redis), so a test can
make the package's own code fail where no outside fault could: a claim that raises something
that is not a Redis error, a slot thread that ends anyway, and a Redis that forgets the worker
(restarted empty). Each time the worker logs it and goes on; no job is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from worker_helpers import NS, wait_until

from pyresqueworker import Client
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol.queues import QueueSpec
from pyresqueworker.worker._claim import Claimer
from pyresqueworker.worker._process import WorkerProcess
from pyresqueworker.worker._slot import Slot
from pyresqueworker.worker.config import WorkerConfig

DONE = "resilience:done"
_RUNNING: list[threading.Thread] = []  # WorkerProcess.run threads of the current test


@pytest.fixture
def worker(redis_url: str, r: redis.Redis) -> Iterator[WorkerProcess]:
    registry = Registry()

    @registry.job("Mark", queue="q")
    def mark(value: str) -> None:
        r.sadd(DONE, value)

    config = WorkerConfig(queues=QueueSpec.parse("q"), redis_url=redis_url, concurrency=2,
                          interval=0.1, heartbeat_interval=0.2, prune_after=5)
    process = WorkerProcess(config, registry)
    yield process
    process.stopping.set()
    process.wake.set()
    # Wait for the whole shutdown: the next test's worker has the same ids (same pid), and
    # this one's unregistering must not land after that one registered.
    for thread in _RUNNING:
        thread.join(20)
    _RUNNING.clear()


def run_in_background(process: WorkerProcess) -> threading.Thread:
    thread = threading.Thread(target=process.run, daemon=True)
    thread.start()
    _RUNNING.append(thread)
    wait_until(lambda: len(process.slots) == 2 and all(s.is_alive() for s in process.slots),
               "slots running")
    return thread


def enqueue(r: redis.Redis, *values: str) -> None:
    client = Client(r)
    for value in values:
        client.enqueue_to("q", "Mark", value)


def test_an_unexpected_error_in_a_claim_is_logged_once_and_retried(
    worker: WorkerProcess, r: redis.Redis, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pyresqueworker")
    real_claim = Claimer.claim
    failures = {"left": 6}

    def flaky_claim(self: Claimer, *args: object, **kwargs: object) -> object:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise KeyError("a bug of our own")
        return real_claim(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Claimer, "claim", flaky_claim)
    run_in_background(worker)
    enqueue(r, *(f"v{i}" for i in range(20)))
    wait_until(lambda: r.scard(DONE) == 20, "every job done after the errors")
    errors = [rec for rec in caplog.records if rec.getMessage() == "unexpected error, retrying"
              and rec.levelno == logging.ERROR]
    assert 1 <= len(errors) <= 2  # once per slot that met the streak, with its traceback
    assert all(rec.exc_info for rec in errors)
    assert all(slot.is_alive() for slot in worker.slots)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_slot_thread_that_ends_is_replaced_and_stays_registered(
    worker: WorkerProcess, r: redis.Redis, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pyresqueworker")
    run_in_background(worker)
    doomed = worker.slots[0]
    original = Slot._claim  # (the thread slot's claim step)

    def ends_once(self: Slot, step: Any) -> Any:
        if self is doomed:
            raise SystemExit("something ended this thread")  # not an Exception: ends the loop
        return original(self, step)

    monkeypatch.setattr(Slot, "_claim", ends_once)
    wakes: list[str] = []

    def replaced() -> bool:
        if worker.slots[0] is not doomed and worker.slots[0].is_alive():
            return True
        # An idle slot sleeps until a job comes, and a ring wakes one slot of the two:
        # keep queueing jobs until the doomed one has woken (and ended).
        wakes.append(f"wake{len(wakes)}")
        enqueue(r, wakes[-1])
        return False

    wait_until(replaced, "a replacement slot")
    monkeypatch.setattr(Slot, "_claim", original)
    assert worker.slots[0].worker_id == doomed.worker_id
    assert any("slot thread ended unexpectedly" in rec.getMessage() for rec in caplog.records)
    enqueue(r, *(f"w{i}" for i in range(10)))
    wait_until(lambda: r.scard(DONE) == 10 + len(wakes), "jobs done by the new slot")
    registered = {m.decode() for m in r.smembers(NS + "workers")}
    assert set(worker.worker_ids) <= registered


def test_a_redis_that_forgot_the_worker_sees_it_register_again(
    worker: WorkerProcess, r: redis.Redis, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="pyresqueworker")
    run_in_background(worker)
    # What a restart without persistence looks like to the worker: another server (run_id)
    # with none of its keys.
    monkeypatch.setattr(type(worker.housekeeper), "server_id", lambda _self: "another-server")
    r.flushall()
    wait_until(lambda: set(worker.worker_ids) <= {m.decode() for m in r.smembers(NS + "workers")},
               "registered again")
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("not the server this worker registered with" in m for m in messages)
    assert not any("another worker's prune" in m for m in messages)
