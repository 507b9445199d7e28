"""Running jobs inline: run_inline() and perform_enqueued() against real Redis and fakeredis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import GOLDEN

from pyresqueworker.client._client import Client
from pyresqueworker.jobs.activejob import JOB_WRAPPER
from pyresqueworker.jobs.registry import (
    DontPerform,
    PayloadError,
    Registry,
    UnknownJobClass,
    current_job,
    default_registry,
)
from pyresqueworker.jobs.testing import perform_enqueued, run_inline
from pyresqueworker.protocol.job import Job


@pytest.fixture
def reg() -> Registry:
    reg = Registry()

    @reg.job("Math::Add")
    def add(a: int, b: int) -> int:
        return a + b

    @reg.job("Echo")
    def echo(*args: Any) -> list[Any]:
        return list(args)

    @reg.job("Boom")
    def boom(message: str) -> None:
        raise ValueError(message)

    @reg.job("AsyncDouble")
    async def double(x: int) -> int:
        return x * 2

    return reg


@pytest.mark.parametrize(
    "payload",
    [
        {"class": "Math::Add", "args": [2, 3]},
        '{"class":"Math::Add","args":[2,3]}',
        b'{"class":"Math::Add","args":[2,3]}',
    ],
)
def test_run_inline_accepts_dict_str_and_bytes(reg: Registry, payload: Any) -> None:
    assert run_inline(payload, registry=reg) == 5


def test_dict_payloads_go_through_json_first(reg: Registry) -> None:
    assert run_inline({"class": "Echo", "args": [(1, 2), {"k": (3,)}]}, registry=reg) == [
        [1, 2], {"k": [3]}
    ]
    with pytest.raises(TypeError):
        run_inline({"class": "Echo", "args": [object()]}, registry=reg)


def test_run_inline_raises_the_jobs_exception(reg: Registry) -> None:
    with pytest.raises(ValueError, match="kaput"):
        run_inline({"class": "Boom", "args": ["kaput"]}, registry=reg)


def test_run_inline_async_handler(reg: Registry) -> None:
    assert run_inline({"class": "AsyncDouble", "args": [21]}, registry=reg) == 42


def test_run_inline_bad_payloads(reg: Registry) -> None:
    with pytest.raises(UnknownJobClass, match="uninitialized constant Nope"):
        run_inline({"class": "Nope", "args": []}, registry=reg)
    with pytest.raises(PayloadError, match="not valid JSON"):
        run_inline(b"{not json", registry=reg)
    with pytest.raises(PayloadError, match="not a JSON object"):
        run_inline("[1, 2]", registry=reg)
    with pytest.raises(PayloadError, match="args must be a JSON array, got string"):
        run_inline({"class": "Echo", "args": "x"}, registry=reg)


def test_run_inline_sets_current_job_and_queue() -> None:
    reg = Registry()
    seen: list[Job] = []
    reg.register("Cur", lambda: seen.append(current_job()[0]))
    run_inline({"class": "Cur"}, registry=reg, queue="mail")
    assert seen[0].queue == "mail" and seen[0].raw == b'{"class":"Cur"}'


def test_run_inline_runs_hooks_and_returns_none_when_skipped() -> None:
    events: list[str] = []

    class Guarded:
        @staticmethod
        def before_perform(allowed: bool) -> None:
            events.append("before")
            if not allowed:
                raise DontPerform()

        @staticmethod
        def perform(allowed: bool) -> str:
            events.append("perform")
            return "ran"

    reg = Registry()
    reg.job()(Guarded)
    assert run_inline({"class": "Guarded", "args": [True]}, registry=reg) == "ran"
    assert run_inline({"class": "Guarded", "args": [False]}, registry=reg) is None
    assert events == ["before", "perform", "before"]


def test_run_inline_uses_the_default_registry() -> None:
    @default_registry.job("Tests::InlineDefault")
    def inline_default(x: int) -> int:
        return -x

    assert run_inline({"class": "Tests::InlineDefault", "args": [4]}) == -4


def test_run_inline_active_job_golden_payload() -> None:
    reg = Registry()

    @reg.job("HelloJob")
    def hello(name: str, n: int, opts: dict[str, Any], *, greeting: str, at: Any) -> str:
        return f"{greeting} {name} {n} {opts['sym']} {at.isoformat()}"

    raw = (GOLDEN / "activejob-6.1-payload.json").read_bytes()
    assert json.loads(raw)["class"] == JOB_WRAPPER
    assert run_inline(raw, registry=reg) == "hi world 42 x 2024-01-15T09:50:00+00:00"


# -- perform_enqueued -----------------------------------------------------------------------


@pytest.fixture
def client(r: redis.Redis) -> Iterator[Client]:
    client = Client(redis=r, namespace="inline-test")
    yield client


def test_perform_enqueued_drains_a_real_redis_queue_in_order(
    client: Client, r: redis.Redis, reg: Registry
) -> None:
    client.enqueue_to("math", "Math::Add", 1, 2)
    client.enqueue_to("math", "Echo", "a")
    client.enqueue_to("math", "Math::Add", 10, 20)
    client.enqueue_to("other", "Echo", "untouched")
    seen: list[str] = []
    results = perform_enqueued(client, "math", registry=reg, on_job=lambda j: seen.append(j.queue))
    assert results == [3, ["a"], 30]
    assert seen == ["math"] * 3
    assert r.llen("inline-test:queue:math") == 0
    assert r.llen("inline-test:queue:other") == 1


def test_perform_enqueued_limit_and_errors(client: Client, r: redis.Redis, reg: Registry) -> None:
    for i in range(3):
        client.enqueue_to("q", "Echo", i)
    assert perform_enqueued(client, "q", registry=reg, limit=2) == [[0], [1]]
    assert r.llen("inline-test:queue:q") == 1
    client.enqueue_to("q", "Boom", "stop")
    client.enqueue_to("q", "Echo", "after")
    with pytest.raises(ValueError, match="stop"):
        perform_enqueued(client, "q", registry=reg)
    # The raising job was popped; what follows it is still queued.
    assert [json.loads(x)["args"] for x in r.lrange("inline-test:queue:q", 0, -1)] == [["after"]]


def test_perform_enqueued_runs_active_jobs_enqueued_by_the_client(
    client: Client, reg: Registry
) -> None:
    seen: list[Any] = []

    @reg.job("ReportJob")
    def report(*args: Any, **kwargs: Any) -> None:
        seen.append((args, kwargs))

    client.enqueue_active_job("ReportJob", "weekly", {"rows": 3}, queue="reports", notify=True)
    perform_enqueued(client, "reports", registry=reg)
    assert seen == [(("weekly", {"rows": 3}), {"notify": True})]


def test_perform_enqueued_with_fakeredis(fake_redis: redis.Redis, reg: Registry) -> None:
    client = Client(redis=fake_redis)
    client.enqueue_to("q", "Math::Add", 4, 5)
    assert perform_enqueued(client, "q", registry=reg) == [9]
    assert perform_enqueued(client, "q", registry=reg) == []
