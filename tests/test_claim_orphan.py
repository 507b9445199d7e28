"""A claim with nothing to finish while the slot's worker key still holds a job (the soak's
second bug): the job's completion never reached this Redis (a retry written to a master that a
Sentinel failover then demoted), so the claim must not overwrite the key. The job goes back
to the front of its queue; a large item still being taken is left to the claimer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from claim_helpers import RUN_AT, WID
from fault_sentinel import SentinelGroup
from fault_servers import HOST, RedisNode, info, wait_for
from worker_helpers import WorkerProc, wait_until, worker_env

from pyresqueworker import Client
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.jobs.retry import Retry, retry_key_suffix
from pyresqueworker.protocol.connection import ConnectionFactory
from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._claim import (
    BEING_TAKEN,
    NO_FINISH,
    SUCCESS,
    Claimed,
    Claimer,
    Finish,
)
from pyresqueworker.worker._job_outcome import failure_for, make_job
from pyresqueworker.worker._retrying import Retrier
from pyresqueworker.worker.scheduler import Scheduler

NS = "resque:"
J = b'{"class":"Doomed","args":["j"]}'
K = b'{"class":"Doomed","args":["k"]}'


def held(r: redis.Redis, keys: Keys) -> bytes | None:
    value = r.get(keys.worker(WID))
    return None if value is None else bytes(value)


def test_a_job_left_in_the_worker_key_goes_back_to_the_front_of_its_queue(
    r: redis.Redis, slot_claimer: tuple[Claimer, Keys]
) -> None:
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), J, K)
    first = claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert isinstance(first, Claimed) and first.raw == J
    # J's completion was lost; the slot goes on with nothing to finish.
    assert claimer.claim(["low"], NO_FINISH, RUN_AT) is None
    assert r.lrange(keys.queue("high"), 0, -1) == [J, K]
    assert held(r, keys) is None
    # The next claim of that queue takes it again.
    again = claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert isinstance(again, Claimed) and again.raw == J
    assert r.lrange(keys.queue("high"), 0, -1) == [K]


def test_a_finish_still_completes_the_held_job_and_requeues_nothing(
    r: redis.Redis, slot_claimer: tuple[Claimer, Keys]
) -> None:
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), J, K)
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    second = claimer.claim(["high"], SUCCESS, RUN_AT)
    assert isinstance(second, Claimed) and second.raw == K
    assert r.llen(keys.queue("high")) == 0 and r.get(keys.stat("processed")) == b"1"


def test_a_payload_kept_in_the_raw_list_is_requeued_byte_for_byte(
    r: redis.Redis, slot_claimer: tuple[Claimer, Keys]
) -> None:
    claimer, keys = slot_claimer
    odd = b"\xff not json"
    r.rpush(keys.queue("high"), odd)
    claimed = claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert isinstance(claimed, Claimed) and not claimed.valid
    assert claimer.claim(["low"], NO_FINISH, RUN_AT) is None
    assert r.lrange(keys.queue("high"), 0, -1) == [odd]
    assert not r.exists(keys.worker(WID), keys.raw_payload(WID))


def test_a_large_item_being_taken_is_left_to_the_claimer(
    r: redis.Redis, slot_claimer: tuple[Claimer, Keys]
) -> None:
    claimer, keys = slot_claimer
    big = json.dumps({"class": "Big", "args": ["x" * 10_000]}).encode()
    r.rpush(keys.queue("big"), big)
    r.set(keys.worker(WID), b'{"queue":"big","run_at":"' + RUN_AT.encode() + b'"' + BEING_TAKEN)
    assert claimer.claim(["low"], NO_FINISH, RUN_AT) is None
    assert r.lrange(keys.queue("big"), 0, -1) == [big]  # still there once, not pushed again


def test_an_adopted_job_does_not_overwrite_a_held_one(
    r: redis.Redis, slot_claimer: tuple[Claimer, Keys]
) -> None:
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), J)
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    adopted = claimer.adopt("low", K, NO_FINISH, RUN_AT)  # --fetch blpop popped K
    assert adopted.raw == K and (held(r, keys) or b"").endswith(K + b"}")
    assert r.lrange(keys.queue("high"), 0, -1) == [J]


def test_a_requeued_capped_job_no_longer_counts_as_running(
    r: redis.Redis, slot_claimer: tuple[Claimer, Keys]
) -> None:
    claimer, keys = slot_claimer
    r.hset(keys.concurrency_caps, "Doomed", 1)
    r.rpush(keys.queue("high"), J)
    claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert r.hget(keys.running_capped, WID) == b"Doomed"
    assert claimer.claim(["low"], NO_FINISH, RUN_AT) is None
    assert r.hget(keys.running_capped, WID) is None
    assert r.lrange(keys.queue("high"), 0, -1) == [J]


# -- across a failover --------------------------------------------------------------------


def test_a_retry_written_to_a_master_being_demoted_does_not_lose_the_job() -> None:
    """The moment of a failover that loses writes: the replica is promoted while the old
    master still takes them; the retry lands there, the slot's next claim on the new one."""
    keys = Keys(NS)
    old = RedisNode()
    new = RedisNode(["--replicaof", HOST, str(old.port)])
    try:
        wait_for(lambda: info(new.port).get("master_link_status") == "up", 10, "replication")
        on_old = redis.Redis(port=old.port, single_connection_client=True)
        on_new = redis.Redis(port=new.port, single_connection_client=True)
        on_old.rpush(keys.queue("jobs"), J)
        claimed = Claimer(on_old, keys, WID).claim(["jobs"], NO_FINISH, RUN_AT)
        assert isinstance(claimed, Claimed)
        assert on_old.execute_command("WAIT", 1, 5000) == 1  # the claim is on the replica
        on_new.execute_command("REPLICAOF", "NO", "ONE")  # Sentinel promotes it
        registry = Registry()
        registry.register("Doomed", lambda tag: None, retry=Retry(max=2, backoff="fixed",
                                                                  base=1))
        job = make_job(claimed, WID)
        failure = failure_for(job, RuntimeError("boom"))
        assert Retrier(on_old, keys, registry, WID).settle(job, Finish("2", failure)) is None
        assert on_old.zcard(keys.delayed_schedule) == 1  # scheduled where nobody will look
        # The slot moved to the new master: its next claim has nothing to finish.
        assert Claimer(on_new, keys, WID).claim(["other"], NO_FINISH, RUN_AT) is None
        assert on_new.lrange(keys.queue("jobs"), 0, -1) == [J]
        assert not on_new.exists(keys.worker(WID))
    finally:
        old.close()
        new.close()


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    sentinels = SentinelGroup()
    yield sentinels
    sentinels.close()


def _move_due_retries(url: str, stop: threading.Event) -> threading.Thread:
    """A scheduler on whichever node is master, every 0.2 s (a worker's waits 5 s)."""
    client = Client(ConnectionFactory(url).connect(socket_timeout=5))
    thread = threading.Thread(target=Scheduler(client, interval=0.2).run, args=(stop,),
                              daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_a_retry_across_a_sentinel_failover_keeps_the_job(
    group: SentinelGroup, r: redis.Redis, redis_url: str, execution: str
) -> None:
    """The job fails on a master that Sentinel is replacing (the handler starts the
    failover and fails once the replica is promoted): it must still run its retries and end
    with one failure entry counting its attempts."""
    master = redis.Redis(port=group.master_port())
    Client(master).enqueue_to("jobs", "FailoverAtRetry", "f1")
    assert master.execute_command("WAIT", 1, 5000) == 1
    env = worker_env(redis_url, {"TEST_SENTINEL_PORT": str(group.sentinel_ports[0]),
                                 "TEST_REPLICA_PORT": str(group.replica_port())})
    argv = ["--app", "worker_jobs", "--app", "retry_outage_jobs", "--redis", group.url,
            "--queues", "jobs", "--interval", "0.1", "--execution", execution]
    stop = threading.Event()
    mover = _move_due_retries(group.url, stop)
    worker = WorkerProc(argv, env, redis_url)
    try:
        def failure() -> list[dict[str, Any]]:
            data = redis.Redis(port=group.master_port(), socket_timeout=5)
            try:
                return [json.loads(x) for x in data.lrange(NS + "failed", 0, -1)]
            except redis.RedisError:
                return []

        [entry] = wait_until(failure, "the job's failure entry", timeout=45, every=0.2)
        assert entry["exception"] == "worker_jobs.JobError" and entry["attempts"] == 3, entry
        assert r.llen("test:ran") >= 3, worker.log()[-3000:]
        data = redis.Redis(port=group.master_port())
        assert data.keys(NS + retry_key_suffix("FailoverAtRetry", ["f1"])) == []
    finally:
        stop.set()
        mover.join(10)
        worker.cleanup()


def _exists_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_exists", {}).get("calls", 0))


def test_the_held_job_check_costs_a_claim_with_an_empty_worker_key_no_command(
    r: redis.Redis, slot_claimer: tuple[Claimer, Keys]
) -> None:
    """It rides in the EXISTS that asks whether pauses or caps are in use: a slot waking from
    an idle wait (nothing to finish) sends one EXISTS, as a busy one does."""
    claimer, keys = slot_claimer
    r.rpush(keys.queue("high"), J)
    claimer.claim(["low"], NO_FINISH, RUN_AT)  # (the script is loaded)
    before = _exists_calls(r)
    assert claimer.claim(["low"], NO_FINISH, RUN_AT) is None
    claimed = claimer.claim(["high"], NO_FINISH, RUN_AT)
    assert isinstance(claimed, Claimed)
    assert _exists_calls(r) - before == 2  # one per claim
    claimer.claim(["low"], SUCCESS, RUN_AT)
    assert _exists_calls(r) - before == 3
