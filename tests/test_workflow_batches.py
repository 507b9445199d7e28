"""Batches: pushed when the block ends, callbacks enqueued exactly once, status per job,
nesting, and the same from an AsyncClient and from job handles."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from pyresqueworker import AsyncClient, Client, Registry
from pyresqueworker.protocol.workflow import WorkflowKeys, finish_command, tracking_of


def app(r: redis.Redis, client: Client) -> Registry:
    registry = Registry()

    @registry.job("Work", queue="q")
    def work(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    @registry.job("Notify", queue="callbacks")
    def notify(*args: Any) -> None:
        r.rpush("notified", json.dumps(list(args)))

    @registry.job("Fan", queue="q")
    def fan(parts: int) -> None:  # opens a child batch from inside a batch's job
        with client.batch(on_success=("Notify", ["child done"]), queue="callbacks") as child:
            for n in range(parts):
                child.enqueue_to("q", "Work", n)

    return registry


def notified(r: redis.Redis) -> list[list[Any]]:
    return [json.loads(x) for x in r.lrange("notified", 0, -1)]


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_success_and_complete_callbacks_run_once(redis_url: str, r: redis.Redis, drain: Any,
                                                 execution: str) -> None:
    client = Client(redis_url)
    with client.batch(on_success=("Notify", [42]), on_complete=("Notify", ["all done"]),
                      queue="callbacks", description="nightly") as b:
        refs = [b.enqueue_to("q", "Work", n, result_ttl=60) for n in range(10)]
        assert r.llen("resque:queue:q") == 0  # nothing is pushed inside the block
    status = client.batch_status(b.id)
    assert status is not None and (status.total, status.pending) == (10, 10)
    drain(app(r, client), "q,callbacks", execution=execution)
    assert sorted(notified(r), key=str) == [["all done"], [42]]
    status = client.batch_status(b.id)
    assert status is not None and status.complete
    assert (status.succeeded, status.failed, status.pending) == (10, 0, 0)
    assert set(status.jobs.values()) == {"succeeded"} and not status.waiting_for
    assert [ref.result(timeout=5) for ref in refs] == list(range(10))
    assert status.description == "nightly" and status.on_success == ("Notify", [42])


def test_a_failure_runs_on_complete_only(redis_url: str, r: redis.Redis, drain: Any) -> None:
    client = Client(redis_url)
    with client.batch(on_success=("Notify", ["ok"]), on_complete=("Notify", ["done"]),
                      queue="callbacks") as b:
        b.enqueue_to("q", "Work", 1)
        bad = b.enqueue_to("q", "Work", -1)
    drain(app(r, client), "q,callbacks")
    assert notified(r) == [["done"]]
    status = client.batch_status(b.id)
    assert status is not None and (status.succeeded, status.failed) == (1, 1)
    assert status.jobs[bad.id] == "failed"


def test_nothing_is_pushed_when_the_block_raises(redis_url: str, r: redis.Redis) -> None:
    client = Client(redis_url)
    with pytest.raises(KeyError), client.batch(on_complete=("Notify", []),
                                               queue="callbacks") as b:
        b.enqueue_to("q", "Work", 1)
        raise KeyError("changed my mind")
    assert r.llen("resque:queue:q") == 0
    assert client.batch_status(b.id) is None and not r.keys("resque:pyresque:*")


def test_an_empty_batch_completes_at_once(redis_url: str, r: redis.Redis) -> None:
    client = Client(redis_url)
    with client.batch(on_success=("Notify", ["empty"]), queue="callbacks") as b:
        pass
    assert r.lrange("resque:queue:callbacks", 0, -1) == [b'{"class":"Notify","args":["empty"]}']
    status = client.batch_status(b.id)
    assert status is not None and status.complete


def test_a_child_batch_holds_its_parent(redis_url: str, r: redis.Redis, drain: Any) -> None:
    client = Client(redis_url)
    with client.batch(on_success=("Notify", ["parent done"]), queue="callbacks") as parent:
        parent.enqueue_to("q", "Fan", 3)
        parent.enqueue_to("q", "Work", 7)
    drain(app(r, client), "q,callbacks")
    assert notified(r) == [["child done"], ["parent done"]]  # the child completes first
    status = client.batch_status(parent.id)
    assert status is not None and status.complete and status.total == 3
    children = [m for m in status.jobs if m.startswith("batch:")]
    assert len(children) == 1 and status.jobs[children[0]] == "succeeded"
    child = client.batch_status(children[0][len("batch:"):])
    assert child is not None and child.parent == parent.id and child.succeeded == 3


def test_a_job_finished_twice_counts_once(redis_url: str, r: redis.Redis, drain: Any) -> None:
    """A worker killed after its job's end was recorded, before the claim that completed it:
    the job runs again and reports again. The callback is still enqueued once."""
    client = Client(redis_url)
    with client.batch(on_success=("Notify", ["once"]), queue="callbacks") as b:
        b.enqueue_to("q", "Work", 1)
    item = json.loads(r.lindex("resque:queue:q", 0) or b"")
    tracking = tracking_of(item)
    assert tracking is not None
    for _ in range(3):
        r.execute_command(*finish_command("resque:", tracking, "succeeded", "1").eval_args())
    assert r.lrange("resque:queue:callbacks", 0, -1) == [b'{"class":"Notify","args":["once"]}']
    status = client.batch_status(b.id)
    assert status is not None and (status.succeeded, status.pending) == (1, 0)


def test_handles_join_a_batch(redis_url: str, r: redis.Redis, drain: Any) -> None:
    client = Client(redis_url)
    registry = app(r, client)
    work = registry.handle_for(registry.handler("Work").target).using(client)
    with client.batch(on_success=("Notify", ["handles"]), queue="callbacks") as b:
        work.enqueue(1, batch=b)
        work.with_options(batch=b).enqueue_to("q", 2)
    assert r.llen("resque:queue:q") == 2
    drain(registry, "q,callbacks")
    assert notified(r) == [["handles"]]


def test_an_async_batch(redis_url: str, r: redis.Redis, drain: Any) -> None:
    async def main() -> str:
        client = AsyncClient(redis_url)
        async with client.batch(on_complete=("Notify", ["async"]), queue="callbacks") as b:
            b.enqueue_to("q", "Work", 5)
        await client.close()
        return b.id

    batch_id = asyncio.run(main())
    drain(app(r, Client(redis_url)), "q,callbacks")
    assert notified(r) == [["async"]]
    status = Client(redis_url).batch_status(batch_id)
    assert status is not None and status.complete


def test_batches_are_listed_newest_first_and_expire(redis_url: str, r: redis.Redis,
                                                    drain: Any) -> None:
    client = Client(redis_url)
    ids = []
    for n in range(3):
        with client.batch(description=f"b{n}") as b:
            b.enqueue_to("q", "Work", n)
        ids.append(b.id)
    assert [s.description for s in client.batches()] == ["b2", "b1", "b0"]
    drain(app(r, client))
    keys = WorkflowKeys("resque:")
    assert 0 < r.ttl(keys.batch(ids[0])) <= 86_400  # finished: kept a day
    r.delete(keys.batch(ids[1]), keys.batch_jobs(ids[1]))  # as if it expired
    assert [s.id for s in client.batches()] == [ids[2], ids[0]]
    assert r.zcard(keys.batches) == 2
