"""Dependencies: a job reaches its queue (where Ruby and resque-web see it) only once every
job it depends on succeeded; a dependency that fails for good cancels it, unless told to run."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from pyresqueworker import Client, JobFailed, Registry


def recording(r: redis.Redis) -> Registry:
    registry = Registry()

    @registry.job("Step", queue="q")
    def step(name: str, fail: bool = False) -> str:
        r.rpush("order", name)
        if fail:
            raise RuntimeError(f"{name} broke")
        return name.upper()

    return registry


def order(r: redis.Redis) -> list[str]:
    return [x.decode() for x in r.lrange("order", 0, -1)]


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_a_chain_of_three_runs_in_order(redis_url: str, r: redis.Redis, drain: Any,
                                        execution: str) -> None:
    client = Client(redis_url)
    c_first = client.enqueue_to("q", "Step", "c-before", result_ttl=60)  # unrelated, queued
    a = client.enqueue_to("q", "Step", "a", result_ttl=60)
    b = client.enqueue_to("q", "Step", "b", depends_on=[a], result_ttl=60)
    c = client.enqueue_to("q", "Step", "c", depends_on=[b], result_ttl=60)
    assert r.llen("resque:queue:q") == 2  # b and c are held back, not on their queue
    assert b.status() == c.status() == "scheduled"
    drain(recording(r), execution=execution)
    assert order(r).index("a") < order(r).index("b") < order(r).index("c")
    assert [ref.result(timeout=5) for ref in (c_first, a, b, c)] == ["C-BEFORE", "A", "B", "C"]


def test_a_dependent_waits_for_every_dependency(redis_url: str, r: redis.Redis,
                                                drain: Any) -> None:
    client = Client(redis_url)
    a = client.enqueue_to("q", "Step", "a", result_ttl=60)
    b = client.enqueue_to("q", "Step", "b", result_ttl=60)
    joined = client.enqueue_to("q", "Step", "joined", depends_on=[a, b.id])
    drain(recording(r))
    assert order(r)[-1] == "joined" and set(order(r)) == {"a", "b", "joined"}
    assert joined.status() == "succeeded"


def test_a_failed_dependency_cancels_the_chain(redis_url: str, r: redis.Redis,
                                               drain: Any) -> None:
    client = Client(redis_url)
    a = client.enqueue_to("q", "Step", "a", True, result_ttl=60)
    b = client.enqueue_to("q", "Step", "b", depends_on=[a], result_ttl=60)
    c = client.enqueue_to("q", "Step", "c", depends_on=[b], result_ttl=60)
    drain(recording(r))
    assert order(r) == ["a"]
    assert (a.status(), b.status(), c.status()) == ("failed", "canceled", "canceled")
    with pytest.raises(JobFailed, match="Canceled") as caught:
        c.result(timeout=5)
    assert b.id in caught.value.error
    assert r.llen("resque:queue:q") == 0


def test_on_dependency_failure_run_runs_it_anyway(redis_url: str, r: redis.Redis,
                                                  drain: Any) -> None:
    client = Client(redis_url)
    a = client.enqueue_to("q", "Step", "a", True, result_ttl=60)
    cleanup = client.enqueue_to("q", "Step", "cleanup", depends_on=[a],
                                on_dependency_failure="run", result_ttl=60)
    drain(recording(r))
    assert order(r) == ["a", "cleanup"]
    assert cleanup.result(timeout=5) == "CLEANUP"


def test_a_finished_dependency_releases_or_cancels_at_once(redis_url: str, r: redis.Redis,
                                                           drain: Any) -> None:
    client = Client(redis_url)
    good = client.enqueue_to("q", "Step", "good", result_ttl=60)
    bad = client.enqueue_to("q", "Step", "bad", True, result_ttl=60)
    drain(recording(r))
    later = client.enqueue_to("q", "Step", "later", depends_on=[good])
    assert later.status() == "queued" and r.llen("resque:queue:q") == 1
    never = client.enqueue_to("q", "Step", "never", depends_on=[bad])
    assert never.status() == "canceled" and r.llen("resque:queue:q") == 1


def test_an_unknown_dependency_is_refused_and_nothing_is_written(redis_url: str,
                                                                 r: redis.Redis) -> None:
    client = Client(redis_url)
    plain = client.enqueue_to("q", "Step", "plain")  # not tracked: nothing records its end
    with pytest.raises(redis.ResponseError, match="unknown dependency"):
        client.enqueue_to("q", "Step", "x", depends_on=[plain])
    assert r.llen("resque:queue:q") == 1
    assert not r.keys("resque:pyresque:*")


def test_a_delayed_job_cannot_also_have_dependencies(redis_url: str) -> None:
    client = Client(redis_url)
    a = client.enqueue_to("q", "Step", "a", result_ttl=60)
    with pytest.raises(TypeError):
        client.enqueue_in(60, "Step", "x", queue="q", depends_on=[a])  # type: ignore[call-arg]


def test_a_tracked_job_failed_by_the_prune_cancels_its_dependents(redis_url: str,
                                                                  r: redis.Redis) -> None:
    """A dead worker's job failed by the prune (``--on-dead-worker fail``, or a poison pill)
    ends for its dependents too."""
    from pyresqueworker.protocol import wire
    from pyresqueworker.worker._prune import Pruner

    client = Client(redis_url)
    a = client.enqueue_to("q", "Step", "a", result_ttl=60)
    b = client.enqueue_to("q", "Step", "b", depends_on=[a])
    item = r.lpop("resque:queue:q") or b""
    dead = "ghost:1:q"
    r.sadd("resque:workers", dead)
    r.set(f"resque:worker:{dead}", wire.worker_value("q", wire.run_at(), item.decode()))
    pruner = Pruner(r, wire.Keys("resque:"), "me:2:q", ("q",), "ghost", prune_after=1.0)
    assert pruner.recover(dead, action="fail") == "failed"
    assert (a.status(), b.status()) == ("failed", "canceled")
    with pytest.raises(JobFailed, match="did not gracefully exit"):
        a.result(timeout=1)
