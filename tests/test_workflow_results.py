"""Results: a tracked job's return value kept for its TTL, waited for by blocking on Redis,
its failure raised as JobFailed, and a job nobody follows left exactly as it was."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import redis

from pyresqueworker import (
    AsyncClient,
    Client,
    JobFailed,
    JobRef,
    Registry,
    Retry,
)
from pyresqueworker.protocol import wire

EXECUTIONS = ["threads", "asyncio"]


def squares() -> Registry:
    registry = Registry()

    @registry.job("Square", queue="q")
    def square(n: int) -> int:
        if n < 0:
            raise ValueError(f"negative: {n}")
        return n * n

    @registry.job("Obj", queue="q")
    def obj() -> object:
        return object()

    @registry.job("Flaky", queue="q", retry=Retry(max=3, backoff="fixed", base=600))
    def flaky() -> None:
        raise RuntimeError("try later")

    return registry


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_a_result_is_kept_for_its_ttl(redis_url: str, r: redis.Redis, drain: Any,
                                      execution: str) -> None:
    client = Client(redis_url)
    ref = client.enqueue_to("q", "Square", 7, result_ttl=120)
    assert isinstance(ref, JobRef) and isinstance(ref, str) and ref.tracked
    assert ref.status() == "queued"
    drain(squares(), execution=execution)
    assert ref.result(timeout=5) == 49
    assert ref.status() == "succeeded"
    assert client.result(ref.id, timeout=1) == 49  # by an id kept elsewhere
    assert 100 < r.ttl(f"resque:pyresque:job:{ref}") <= 120


def test_a_forked_job_returns_its_result_too(redis_url: str, drain: Any) -> None:
    client = Client(redis_url)
    ref = client.enqueue_to("q", "Square", 9, result_ttl=60)
    drain(squares(), fork_per_job=True)
    assert ref.result(timeout=5) == 81


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_a_failed_job_raises_jobfailed_with_resques_failure(redis_url: str, drain: Any,
                                                            execution: str) -> None:
    client = Client(redis_url)
    ref = client.enqueue_to("q", "Square", -2, result_ttl=60)
    drain(squares(), execution=execution)
    with pytest.raises(JobFailed) as caught:
        ref.result(timeout=5)
    assert caught.value.exception == "ValueError"
    assert caught.value.error == "negative: -2"
    assert caught.value.backtrace and "square" in " ".join(caught.value.backtrace)
    assert ref.status() == "failed"
    assert client.failed_count() == 1  # Resque's failure entry as always


def test_the_handlers_result_ttl_tracks_its_jobs(redis_url: str, drain: Any) -> None:
    registry = Registry()

    @registry.job("Cube", queue="q", result_ttl=60)
    def cube(n: int) -> int:
        return n ** 3

    client = Client(redis_url)
    ref = cube.using(client).enqueue(3)
    assert ref.tracked
    drain(registry)
    assert ref.result(timeout=5) == 27


def test_a_job_waiting_to_retry_is_retrying(redis_url: str, drain: Any) -> None:
    client = Client(redis_url)
    ref = client.enqueue_to("q", "Flaky", result_ttl=60)
    drain(squares())
    assert ref.status() == "retrying"
    with pytest.raises(TimeoutError):
        ref.result(timeout=0.2)


def test_waiting_blocks_on_redis_and_wakes_when_the_job_ends(redis_url: str, r: redis.Redis,
                                                            drain: Any) -> None:
    client = Client(redis_url)
    ref = client.enqueue_to("q", "Square", 5, result_ttl=60)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(ref.result(timeout=20)))
    before = _calls(r)
    waiter.start()
    time.sleep(1.5)  # nothing runs the job yet: the waiter must be blocked, not polling
    during = _calls(r) - before
    assert during <= 6, f"{during} commands while waiting 1.5 s: that is polling"
    started = time.monotonic()
    drain(squares())
    waiter.join(10)
    assert got == [25]
    assert time.monotonic() - started < 5


def _calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def test_a_timeout_raises_timeouterror(redis_url: str) -> None:
    ref = Client(redis_url).enqueue_to("q", "Square", 1, result_ttl=60)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not finish in 0\.3 s"):
        ref.result(timeout=0.3)
    assert time.monotonic() - started < 2


def test_async_refs_wait_with_await(redis_url: str, drain: Any) -> None:
    async def main() -> tuple[Any, str, str]:
        client = AsyncClient(redis_url)
        ref = await client.enqueue_to("q", "Square", 6, result_ttl=60)
        before = await ref.astatus()
        waiting = asyncio.ensure_future(ref.aresult(timeout=20))
        await asyncio.get_running_loop().run_in_executor(None, drain, squares())
        value = await waiting
        after = await ref.astatus()
        await client.close()
        return value, before, after

    assert asyncio.run(main()) == (36, "queued", "succeeded")


def test_a_sync_refs_aresult_works_in_asyncio_code(redis_url: str, drain: Any) -> None:
    ref = Client(redis_url).enqueue_to("q", "Square", 4, result_ttl=60)
    drain(squares())
    assert asyncio.run(ref.aresult(timeout=5)) == 16


def test_a_result_that_is_not_json_says_so(redis_url: str, drain: Any) -> None:
    ref = Client(redis_url).enqueue_to("q", "Obj", result_ttl=60)
    drain(squares())
    assert ref.status() == "succeeded"
    with pytest.raises(ValueError, match="not JSON"):
        ref.result(timeout=5)


def test_result_ttl_of_the_worker_overrides_the_enqueues(redis_url: str, r: redis.Redis,
                                                         drain: Any) -> None:
    ref = Client(redis_url).enqueue_to("q", "Square", 2, result_ttl=3600)
    drain(squares(), result_ttl=5)
    assert ref.result(timeout=5) == 4
    assert 0 < r.ttl(f"resque:pyresque:job:{ref}") <= 5


def test_a_job_nobody_follows_is_ruby_bytes_and_unknown(redis_url: str, r: redis.Redis) -> None:
    ref = Client(redis_url).enqueue_to("q", "Square", 3)
    assert isinstance(ref, JobRef) and not ref.tracked
    assert r.lrange("resque:queue:q", 0, -1) == [wire.encode_job("Square", [3]).encode()]
    assert ref.status() == "unknown"
    with pytest.raises(LookupError, match=r"not tracked|no job"):
        ref.result(timeout=0.1)
    assert not r.keys("resque:pyresque:*")


def test_a_tracked_payload_keeps_rubys_fields_first(redis_url: str, r: redis.Redis) -> None:
    ref = Client(redis_url).enqueue_to("q", "Square", 3, result_ttl=60)
    item = json.loads(r.lindex("resque:queue:q", 0) or b"")
    assert list(item) == ["class", "args", "id", "pyresque"]
    assert item["id"] == ref and item["pyresque"] == {"ttl": 60}


def test_a_job_with_no_result_costs_no_workflow_command(redis_url: str, r: redis.Redis,
                                                        drain: Any) -> None:
    client = Client(redis_url)
    for n in range(20):
        client.enqueue_to("q", "Square", n)
    r.config_resetstat()
    drain(squares())
    plain = r.info("commandstats")
    assert "cmdstat_eval" not in plain  # the claim is EVALSHA; nothing else per job
    for n in range(20):
        client.enqueue_to("q", "Square", n, result_ttl=60)
    r.config_resetstat()
    drain(squares())
    tracked = r.info("commandstats")
    # One more command per job with a result (EVALSHA of the workflow script, loaded once).
    assert tracked["cmdstat_evalsha"]["calls"] == plain["cmdstat_evalsha"]["calls"] + 20
    assert "cmdstat_eval" not in tracked


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_a_result_survives_a_script_flush_under_the_worker(redis_url: str, r: redis.Redis,
                                                           drain: Any, execution: str) -> None:
    """The worker sends a job's end as EVALSHA of a script it loaded on its connection; a
    SCRIPT FLUSH meanwhile (no reconnect) must not lose the end: it is sent again whole."""
    registry = Registry()

    @registry.job("Flush", queue="q")
    def flush(n: int) -> int:
        redis.Redis.from_url(redis_url).script_flush()
        return n

    client = Client(redis_url)
    first = client.enqueue_to("q", "Square", 2, result_ttl=60)  # loads the script on the link
    refs = [client.enqueue_to("q", "Flush", n, result_ttl=60) for n in range(3)]
    registry.register("Square", squares().handler("Square").target)
    drain(registry, execution=execution)
    assert first.result(timeout=5) == 4
    assert [ref.result(timeout=5) for ref in refs] == [0, 1, 2]


def test_job_states_tells_many_jobs_at_once_and_who_holds_one(redis_url: str, r: redis.Redis,
                                                                drain: Any) -> None:
    """One call for a page of jobs (the dashboard's and ``pyresque batches ID``'s): a job
    held in a worker key, Ruby's or ours, is "running"; an id with no record is left out."""
    client = Client(redis_url)
    done = client.enqueue_to("q", "Square", 3, result_ttl=60)
    drain(squares())
    held = client.enqueue_to("q", "Square", 4, result_ttl=60)
    waiting = client.enqueue_to("q", "Square", 5, result_ttl=60)
    item = r.lpop("resque:queue:q")  # taken as Resque's reserve + working_on write it
    assert item is not None and held in item.decode()
    r.sadd("resque:workers", "host:1:q")
    r.set("resque:worker:host:1:q", json.dumps(
        {"queue": "q", "run_at": "2026-12-07T10:00:00Z", "payload": json.loads(item)}))
    ids = [done, held, waiting, "no-such-job"]
    expected = {done: ("Square", "q", "succeeded"), held: ("Square", "q", "running"),
                waiting: ("Square", "q", "queued")}
    states = client.job_states(ids)
    assert {k: (v.class_name, v.queue, v.state) for k, v in states.items()} == expected

    async def from_async() -> Any:
        async with AsyncClient(redis_url) as aclient:
            return await aclient.job_states(ids)

    assert asyncio.run(from_async()) == states
    assert client.job_states([]) == {}
