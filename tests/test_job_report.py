"""A thread slot reports a finished job (log line, history, metrics) while the next claim's
reply is on its way, so the report costs the slot no time of its own; a report is made once,
also when no claim follows the job."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
import redis
from worker_helpers import WorkerProc, wait_until

from pyresqueworker import Client
from pyresqueworker.jobs.observers import JobObserver, JobOutcome
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol import _resp
from pyresqueworker.protocol._outage import Outage
from pyresqueworker.protocol._resp import FastCaller
from pyresqueworker.protocol.queues import QueueSpec
from pyresqueworker.worker._process import WorkerProcess
from pyresqueworker.worker._slot import Slot
from pyresqueworker.worker.config import WorkerConfig

Spawn = Callable[..., WorkerProc]


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the fast path did, in order: "send", "receive" (each read), and the work's "work"."""
    seen: list[str] = []
    real_send, real_receive = _resp._send_frames, FastCaller._receive

    def send(sock: Any, frames: list[bytes], link: Any) -> None:
        seen.append("send")
        real_send(sock, frames, link)

    def receive(self: FastCaller, sock: Any, reader: Any) -> None:
        seen.append("receive")
        real_receive(self, sock, reader)

    monkeypatch.setattr(_resp, "_send_frames", send)
    monkeypatch.setattr(FastCaller, "_receive", receive)
    return seen


def test_the_work_runs_once_between_the_request_and_its_reply(
    redis_url: str, steps: list[str]
) -> None:
    caller = FastCaller(redis.Redis.from_url(redis_url, single_connection_client=True))
    caller("PING")  # connected
    steps.clear()
    caller.after_send = lambda: steps.append("work")
    assert caller("PING") == b"PONG"
    assert caller("PING") == b"PONG"
    assert steps == ["send", "work", "receive", "send", "receive"]
    assert caller.after_send is None


def test_the_work_runs_even_when_the_send_fails(
    redis_url: str, steps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    caller = FastCaller(redis.Redis.from_url(redis_url, single_connection_client=True))
    caller("PING")
    steps.clear()

    def cut(_sock: Any, _frames: list[bytes], _link: Any) -> None:
        raise ConnectionResetError("cut")

    monkeypatch.setattr(_resp, "_send_frames", cut)
    caller.after_send = lambda: steps.append("work")
    with pytest.raises(redis.ConnectionError):
        caller("PING")
    assert steps == ["work"] and caller.after_send is None


def test_work_left_for_a_caller_that_sends_nothing_more_runs_on_demand() -> None:
    caller = FastCaller(redis.Redis())  # never connects
    done: list[int] = []
    caller.after_send = lambda: done.append(1)
    caller.run_after_send()
    caller.run_after_send()
    assert done == [1]


def test_blpop_mode_logs_a_retried_job_while_it_waits_for_the_next(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    # With --fetch blpop the slot blocks in BLPOP after a job, and a job whose retry was
    # scheduled leaves no completion to send first: no request follows it.
    worker = spawn_worker("--queues", "q", "--fetch", "blpop", "--app", "feature_jobs")
    worker.wait_registered()
    Client(r).enqueue_to("q", "RetryLater", "one")
    wait_until(lambda: "outcome=retried" in worker.log(), "the retried job's line", 10)


def test_a_worker_paused_during_a_job_logs_it_once(r: redis.Redis, spawn_worker: Spawn) -> None:
    worker = spawn_worker("--queues", "q")
    worker.wait_registered()
    Client(r).enqueue_to("q", "Sleep", 1.0, "paused")
    wait_until(lambda: r.keys("resque:worker:*:*") and any(
        b"Sleep" in (r.get(k) or b"") for k in r.keys("resque:worker:*")), "the job running", 10)
    worker.send(signal.SIGUSR2)  # paused while the job runs: no claim follows it
    wait_until(lambda: "job done" in worker.log(), "the job's line", 10)
    assert worker.log().count("job done") == 1


def test_a_claim_that_fails_before_its_request_goes_out_does_not_hold_the_report_back(
    redis_url: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard: list[str] = []

    class Heard(JobObserver):
        def job_finished(self, job: Any, outcome: JobOutcome) -> None:
            heard.append(outcome.outcome)

    registry = Registry()
    registry.job("Mark", queue="q")(lambda: None)
    registry.observe(Heard())
    process = WorkerProcess(WorkerConfig(queues=QueueSpec.parse("q"), redis_url=redis_url),
                            registry)
    slot = Slot(process, 0, process.worker_ids[0])
    Client(r).enqueue_to("q", "Mark")
    claims: list[list[str]] = []
    real_claim = slot.claimer.claim

    def claim(queues: Any, finish: Any, run_at: str) -> Any:
        claims.append(list(heard))
        if len(claims) == 1:
            return real_claim(queues, finish, run_at)
        process.stopping.set()  # (ends the loop after this failure)
        raise redis.ConnectionError("Redis went away")  # before its request went out

    backing_off: list[list[str]] = []

    def pause(_outage: Outage, _exc: BaseException, _stopped: Any) -> None:
        backing_off.append(list(heard))
        process.stop_deadline = 0.0  # the next failure ends the stop

    monkeypatch.setattr(slot.claimer, "claim", claim)
    monkeypatch.setattr(Outage, "pause", pause)
    slot.run()
    assert claims[:2] == [[], []]  # the job ran; its report waited for the next request
    assert backing_off == [["success"]]  # reported before backing off, not after Redis is back
