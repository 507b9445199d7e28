"""A failed job's retry meeting Redis away (the soak's first bug): the job is still in its
slot's worker key, so the slot waits for Redis and schedules the retry then, counting the
attempt once however often the settle is sent; only a stopping worker that has run out of
patience fails the job as it is. Real redis-servers: each test's own, so OOM hurts nobody else.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Optional

import pytest
import redis
from fault_servers import RedisNode
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from worker_helpers import start_worker, wait_until

from pyresqueworker import Client
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.jobs.retry import Retry, retry_key_suffix
from pyresqueworker.protocol import wire
from pyresqueworker.protocol._outage import Outage, OutageBook
from pyresqueworker.protocol.connection import ConnectionFactory
from pyresqueworker.worker._claim import NO_FINISH, Claimed, Claimer, Finish
from pyresqueworker.worker._cycle import Backoff, SettleRetry, WaitHold, settle_retry
from pyresqueworker.worker._job_outcome import failure_for, make_job
from pyresqueworker.worker._retrying import Retrier
from pyresqueworker.worker.scheduler import Scheduler

NS = "resque:"
WID = "host:7:jobs"
POLICY = Retry(max=2, backoff="fixed", base=1)
ITEM = b'{"class":"Doomed","args":["d1"]}'
COUNTER = NS + retry_key_suffix("Doomed", ["d1"])
MARK = NS + "pyresque:retrying:" + WID


class Host:
    """What settling a retry reads of its worker process (a slot cycle's host)."""

    def __init__(self) -> None:
        self.outages = OutageBook()
        self.metrics = SimpleNamespace(reconnected=lambda: None)
        self.hold_until = 0.0
        self.stopping = threading.Event()
        self.stop_deadline = float("inf")

    def holding(self) -> bool:
        """A Sentinel failover holds writes (until ``hold_until``)."""
        return time.monotonic() < self.hold_until


class LosingReplies(redis.Redis):
    """Runs each script call, then loses its reply (a cut mid-reply) the first ``lose``
    times: the caller cannot tell whether it ran."""

    lose = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = super().execute_command(*args, **options)
        if args[0] == "EVALSHA" and self.lose > 0:
            self.lose -= 1
            raise redis.exceptions.ConnectionError("reply lost")
        return reply


@pytest.fixture
def node() -> Iterator[RedisNode]:
    server = RedisNode(["--maxmemory-policy", "noeviction"])
    yield server
    server.close()


def slot_conn(url: str) -> redis.Redis:
    """A connection as a thread slot has (see WorkerProcess.new_connection)."""
    return ConnectionFactory(url).connect(single_connection_client=True,
                                          retry=RedisRetry(NoBackoff(), 1))


def retry_or_fail(host: Host, retrier: Retrier, _worker_id: str, job: Any,
                  failure: Finish) -> Any:
    """A thread slot settling a retry: the cycle's :func:`settle_retry`, its steps done as
    the thread driver does them."""
    outage = Outage("retry", book=host.outages)
    steps = settle_retry(host, outage, job, failure)
    answer: Any = None
    error: Optional[Exception] = None
    while True:
        try:
            step = steps.send(answer) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        answer, error = None, None
        if isinstance(step, WaitHold):
            time.sleep(0.05)
        elif isinstance(step, Backoff):
            step.outage.pause(step.error, host.stopping.is_set)
        else:
            assert isinstance(step, SettleRetry)
            try:
                answer = retrier.settle(step.job, step.failure, token=step.token)
            except Exception as exc:
                error = exc


def claimed_failure(conn: redis.Redis, data: redis.Redis) -> tuple[Retrier, Any, Finish]:
    """A Doomed job claimed into the slot's worker key, failed: its retrier, job, failure."""
    data.rpush(NS + "queue:jobs", ITEM)
    claimed = Claimer(conn, wire.Keys(NS), WID).claim(["jobs"], NO_FINISH, wire.run_at())
    assert isinstance(claimed, Claimed)
    registry = Registry()
    registry.register("Doomed", lambda tag: None, retry=POLICY)
    job = make_job(claimed, WID)
    return (Retrier(conn, wire.Keys(NS), registry, WID), job,
            Finish("2", failure_for(job, RuntimeError("boom"))))


def delayed_items(data: redis.Redis) -> list[bytes]:
    return [item for ts in data.zrange(NS + "delayed_queue_schedule", 0, -1)
            for item in data.lrange(NS + "delayed:" + ts.decode(), 0, -1)]


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    thread.start()
    return thread, result


def test_a_retry_waits_out_an_oom_and_is_then_scheduled(node: RedisNode) -> None:
    data = node.client(decode_responses=False)
    conn = slot_conn(node.url)
    retrier, job, failure = claimed_failure(conn, data)
    data.config_set("maxmemory", 1)
    try:
        thread, result = in_thread(retry_or_fail, Host(), retrier, WID, job, failure)
        time.sleep(1.0)
        assert thread.is_alive(), f"gave up on the retry: {result}"
        assert data.exists(NS + "worker:" + WID)
    finally:
        data.config_set("maxmemory", 0)
    thread.join(10)
    assert result == [None]  # retried, not failed
    assert delayed_items(data) == [b'{"class":"Doomed","args":["d1"],"queue":"jobs"}']
    assert data.get(COUNTER) == b"0" and data.ttl(COUNTER) > 0
    assert not data.exists(NS + "worker:" + WID, MARK)
    assert data.llen(NS + "failed") == 0
    assert data.get(NS + "stat:failed") == b"1" and data.get(NS + "stat:processed") == b"1"


@pytest.mark.parametrize("lose", [1, 2, 3])
def test_a_retry_whose_replies_are_lost_counts_the_attempt_once(node: RedisNode,
                                                                  lose: int) -> None:
    data = node.client(decode_responses=False)
    conn = LosingReplies(port=node.port, single_connection_client=True)
    retrier, job, failure = claimed_failure(conn, data)
    conn.lose = lose  # the bump's reply, the schedule's, then (3) the bump's again
    assert retry_or_fail(Host(), retrier, WID, job, failure) is None
    assert data.get(COUNTER) == b"0"
    assert len(delayed_items(data)) == 1
    assert data.get(NS + "stat:failed") == b"1" and data.get(NS + "stat:processed") == b"1"
    assert not data.exists(NS + "worker:" + WID, MARK)


class LosingTheScheduleReply(redis.Redis):
    """Loses only the reply of the second script call: the bump is answered, the retry's
    schedule runs (completing the job) and its answer is lost."""

    calls = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = super().execute_command(*args, **options)
        if args[0] == "EVALSHA":
            self.calls += 1
            if self.calls == 2:
                raise redis.exceptions.ConnectionError("reply lost")
        return reply


def test_a_retry_whose_schedule_reply_is_lost_counts_the_attempt_once(node: RedisNode) -> None:
    """(Found by a 600 s soak: a Redis restart cut the schedule's reply; the settle sent again
    counted a second attempt, as the schedule had deleted the bump's record with the job.)"""
    data = node.client(decode_responses=False)
    conn = LosingTheScheduleReply(port=node.port, single_connection_client=True)
    retrier, job, failure = claimed_failure(conn, data)
    assert retry_or_fail(Host(), retrier, WID, job, failure) is None
    assert data.get(COUNTER) == b"0"  # one attempt counted
    assert len(delayed_items(data)) == 1  # one retry scheduled
    assert data.get(NS + "stat:failed") == b"1" and data.get(NS + "stat:processed") == b"1"


@pytest.mark.parametrize("lose", [1, 2])
def test_out_of_attempts_with_lost_replies_fails_once_with_its_attempts(
    node: RedisNode, lose: int
) -> None:
    data = node.client(decode_responses=False)
    conn = LosingReplies(port=node.port, single_connection_client=True)
    retrier, job, failure = claimed_failure(conn, data)
    data.set(COUNTER, 1)  # two failed attempts already
    conn.lose = lose
    # Failed for good by the settle itself: nothing is left for the next claim to finish.
    assert retry_or_fail(Host(), retrier, WID, job, failure) == NO_FINISH
    [entry] = [json.loads(raw) for raw in data.lrange(NS + "failed", 0, -1)]
    assert entry["attempts"] == 3 and entry["payload"] == json.loads(ITEM)
    assert not data.exists(COUNTER, MARK, NS + "worker:" + WID)
    assert delayed_items(data) == []
    assert data.get(NS + "stat:failed") == b"1" and data.get(NS + "stat:processed") == b"1"


def test_a_retry_waits_for_a_failover_hold(node: RedisNode) -> None:
    data = node.client(decode_responses=False)
    retrier, job, failure = claimed_failure(slot_conn(node.url), data)
    host = Host()
    host.hold_until = time.monotonic() + 0.6
    thread, result = in_thread(retry_or_fail, host, retrier, WID, job, failure)
    time.sleep(0.4)
    assert data.exists(NS + "worker:" + WID) and not data.exists(COUNTER)
    thread.join(5)
    assert result == [None] and len(delayed_items(data)) == 1


def test_a_stopping_worker_fails_the_job_once_redis_is_gone_past_its_patience(
    node: RedisNode
) -> None:
    data = node.client(decode_responses=False)
    retrier, job, failure = claimed_failure(slot_conn(node.url), data)
    host = Host()
    host.stopping.set()
    data.config_set("maxmemory", 1)
    try:
        started = time.monotonic()
        settled = retry_or_fail(host, retrier, WID, job, failure)
        took = time.monotonic() - started
    finally:
        data.config_set("maxmemory", 0)
    assert settled == failure and 1.5 < took < 6  # STOP_PATIENCE, then as before the fix
    assert data.exists(NS + "worker:" + WID)  # still held: the completion goes with the claim


@pytest.fixture
def scheduler(node: RedisNode) -> Iterator[None]:
    """A scheduler moving due retries every 0.2 s (a worker's --scheduler waits 5 s)."""
    stop = threading.Event()
    mover = Scheduler(Client(redis.Redis(port=node.port, socket_timeout=5)), interval=0.2)
    thread = threading.Thread(target=mover.run, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_every_retry_of_a_worker_meets_an_oom_and_the_job_keeps_its_attempts(
    node: RedisNode, scheduler: None, execution: str
) -> None:
    data = node.client(decode_responses=False)
    Client(data).enqueue_to("jobs", "OomAtRetry", "o1", 0.8)
    worker = start_worker(node.url, "--app", "retry_outage_jobs", "--queues", "jobs",
                          "--execution", execution)
    try:
        raw = wait_until(lambda: data.lrange(NS + "failed", 0, -1), "the failure", timeout=30)
        [entry] = [json.loads(x) for x in raw]
        assert entry["exception"] == "worker_jobs.JobError", entry
        assert entry["attempts"] == 3
        assert data.llen("test:ran") == 3
        assert data.keys(NS + "resque-retry:*") == []
        assert data.keys(NS + "pyresque:retrying:*") == []
        assert "could not schedule a retry" not in worker.log()
    finally:
        data.config_set("maxmemory", 0)
        worker.cleanup()
