"""The slot cycle's decisions, step by step, with no Redis and no threads: the cycle has no I/O
of its own, so a test can be its driver and answer each step as Redis or a handler would."""

from __future__ import annotations

import threading
from typing import Any, Optional

import redis

from pyresqueworker.jobs.observers import JobObserver
from pyresqueworker.jobs.tracing import JobTracing
from pyresqueworker.protocol._outage import OutageBook
from pyresqueworker.protocol.queues import QueueOrder, QueueSpec
from pyresqueworker.worker._claim import NO_FINISH, PAUSED, SUCCESS, Claimed, Finish
from pyresqueworker.worker._cycle import (
    Backoff,
    Claim,
    CycleSettings,
    Perform,
    Pop,
    Report,
    Requeue,
    SettleRetry,
    Sleep,
    SlotCycle,
    WaitHold,
    WaitPaused,
)
from pyresqueworker.worker._tracking import JobTracking
from pyresqueworker.worker.isolation import JobResult
from pyresqueworker.worker.metrics import NULL_METRICS

FAILED = Finish("2", '{"exception":"RuntimeError"}')


class Host:
    """The process, as the cycle reads it."""

    def __init__(self, queues: str = "q") -> None:
        self.queues = QueueOrder(QueueSpec.parse(queues))
        self.tracing = JobTracing("off")
        self.observers = JobObserver()
        self.outages = OutageBook()
        self.metrics = NULL_METRICS
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.stop_deadline = float("inf")
        self.held = False
        self.pause_notes: list[bool] = []
        self.finished = 0

    def holding(self) -> bool:
        return self.held

    def note_global_pause(self, paused: bool) -> None:
        self.pause_notes.append(paused)

    def job_finished(self, slot: Any) -> None:
        self.finished += 1


class Tracking(JobTracking):
    worker_id = "host:1:q"

    def __init__(self) -> None:
        self._init_tracking()


def cycle(host: Host, **settings: bool) -> tuple[SlotCycle, Any]:
    made = SlotCycle(host, CycleSettings(**settings), Tracking(), "slot-0")
    return made, made.run()


def job(raw: bytes = b'{"class":"A","args":[]}') -> Claimed:
    return Claimed("q", raw, True)


def test_a_job_s_completion_rides_on_the_next_claim() -> None:
    host = Host()
    _, steps = cycle(host)
    step = next(steps)
    assert step == Claim(["q"], NO_FINISH)
    step = steps.send(job())
    assert isinstance(step, Perform)
    step = steps.send(JobResult(SUCCESS, "success"))
    assert isinstance(step, Report) and step.outcome.outcome == "success"
    step = steps.send(None)
    assert step == Claim(["q"], SUCCESS)  # no call of its own: it goes with the next claim
    assert host.finished == 1 and host.pause_notes == [False]


def test_nothing_to_claim_sleeps_and_pause_all_workers_says_so() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    assert steps.send(None) == Sleep(["q"], paused=False)
    assert steps.send(None) == Claim(["q"], NO_FINISH)
    assert steps.send(PAUSED) == Sleep(["q"], paused=True)
    assert host.pause_notes == [False, True]


def test_stopping_sends_the_pending_completion_alone_and_ends() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    steps.send(JobResult(FAILED, "failure", "RuntimeError: boom", retryable=False))
    host.stopping.set()
    assert steps.send(None) == Claim([], FAILED)
    try:
        steps.send(None)
    except StopIteration:
        pass
    else:
        raise AssertionError("the cycle went on after the stop")


def test_a_job_a_lost_reply_claimed_during_a_stop_goes_back_to_its_queue() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    steps.send(JobResult(SUCCESS, "success"))
    host.stopping.set()
    assert steps.send(None) == Claim([], SUCCESS)
    lost = job(b'{"class":"B"}')
    assert steps.send(lost) == Requeue(lost)


def test_a_retry_scheduled_leaves_nothing_to_finish_and_reports_retried() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    step = steps.send(JobResult(FAILED, "failure", "RuntimeError: boom"))
    assert isinstance(step, SettleRetry) and step.failure == FAILED and step.token
    step = steps.send(None)  # the retry was scheduled
    assert isinstance(step, Report) and step.outcome.outcome == "retried"
    assert steps.send(None) == Claim(["q"], NO_FINISH)


def test_a_retry_refused_by_its_policy_fails_the_job() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    steps.send(JobResult(FAILED, "failure", "RuntimeError: boom"))
    step = steps.send(FAILED)
    assert isinstance(step, Report) and step.outcome.outcome == "failure"
    assert steps.send(None) == Claim(["q"], FAILED)


def test_a_redis_error_backs_off_and_the_turn_is_tried_again_with_the_completion() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    steps.send(JobResult(SUCCESS, "success"))
    assert steps.send(None) == Claim(["q"], SUCCESS)
    step = steps.throw(redis.ConnectionError("cut"))
    assert isinstance(step, Backoff) and str(step.error) == "cut"
    assert steps.send(None) == Claim(["q"], SUCCESS)  # the completion is not dropped


def test_stopping_with_redis_gone_gives_up_once_its_patience_is_over() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    steps.send(JobResult(SUCCESS, "success"))
    steps.send(None)
    host.stopping.set()
    host.stop_deadline = 0.0  # the shutdown's time is over
    try:
        steps.throw(redis.ConnectionError("gone"))
    except StopIteration:
        pass
    else:
        raise AssertionError("a stopping slot kept waiting for a dead Redis")


def test_an_error_of_our_own_around_a_job_fails_the_job_instead_of_dropping_it() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    step = steps.throw(RuntimeError("a bug in the driver"))
    assert isinstance(step, Claim) and step.finish.mode == "2"
    assert b"a bug in the driver" in step.finish.entry.encode()


def test_a_job_abandoned_by_the_shutdown_ends_the_cycle_without_finishing_it() -> None:
    host = Host()
    made, steps = cycle(host)
    next(steps)
    steps.send(job())
    assert made.tracking.abandon() is not None
    try:
        steps.send(JobResult(SUCCESS, "success"))
    except StopIteration:
        pass
    else:
        raise AssertionError("an abandoned job was finished by its slot")


def test_paused_and_held_wait_without_claiming() -> None:
    host = Host()
    host.paused.set()
    _, steps = cycle(host)
    assert next(steps) == WaitPaused()
    host.paused.clear()
    host.held = True
    assert steps.send(None) == WaitHold()
    host.held = False
    assert steps.send(None) == Claim(["q"], NO_FINISH)


def test_drain_ends_once_every_queue_is_empty() -> None:
    host = Host()
    made, steps = cycle(host, drain=True)
    next(steps)
    steps.send(job())
    steps.send(JobResult(SUCCESS, "success"))
    assert steps.send(None) == Claim(["q"], SUCCESS)
    try:
        steps.send(None)
    except StopIteration:
        pass
    assert made.drained


def test_blpop_sends_the_completion_first_then_pops() -> None:
    host = Host()
    _, steps = cycle(host, blpop=True)
    assert next(steps) == Pop(["q"])
    steps.send(job())
    steps.send(JobResult(SUCCESS, "success"))
    assert steps.send(None) == Claim([], SUCCESS)
    assert steps.send(None) == Pop(["q"])


def test_observers_hear_the_start_before_the_job_runs() -> None:
    heard: list[str] = []

    class Listener(JobObserver):
        def job_started(self, job: Any) -> None:
            heard.append(f"started {job.class_name}")

    host = Host()
    host.observers = Listener()
    _, steps = cycle(host)
    next(steps)
    step: Optional[Any] = steps.send(job())
    assert isinstance(step, Perform) and heard == ["started A"]


def test_a_retry_meeting_redis_away_waits_and_sends_the_same_token_again() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    first = steps.send(JobResult(FAILED, "failure", "RuntimeError: boom"))
    assert isinstance(first, SettleRetry)
    step = steps.throw(redis.ConnectionError("cut"))  # its reply lost: did it run?
    assert isinstance(step, Backoff)
    again = steps.send(None)
    assert isinstance(again, SettleRetry) and again.token == first.token  # counted once
    host.held = True  # a failover began: nothing is written until it is over
    assert isinstance(steps.throw(redis.ConnectionError("cut")), Backoff)
    assert steps.send(None) == WaitHold()
    host.held = False
    last = steps.send(None)
    assert isinstance(last, SettleRetry) and last.token == first.token
    step = steps.send(None)
    assert isinstance(step, Report) and step.outcome.outcome == "retried"


def test_a_stopping_slot_fails_the_job_once_redis_is_gone_past_its_patience() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    steps.send(JobResult(FAILED, "failure", "RuntimeError: boom"))
    host.stopping.set()
    host.stop_deadline = 0.0
    step = steps.throw(redis.ConnectionError("gone"))
    assert isinstance(step, Report) and step.outcome.outcome == "failure"
    assert steps.send(None) == Claim([], FAILED)  # the entry keeps the job


def test_a_retry_that_fails_for_another_reason_fails_the_job() -> None:
    host = Host()
    _, steps = cycle(host)
    next(steps)
    steps.send(job())
    steps.send(JobResult(FAILED, "failure", "RuntimeError: boom"))
    step = steps.throw(ValueError("a bug in the policy"))
    assert isinstance(step, Claim) and step.finish.mode == "2"
