"""AsyncClient against a real Redis: the same writes, byte for byte, and the same readings as
Client for every call; caller pipelines; closing; Ruby reading what it wrote."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Sequence
from typing import Any, Callable

import pytest
import redis
import redis.asyncio

from pyresqueworker import AsyncClient, Client, JobRef
from pyresqueworker.client._aio_delayed import AsyncDelayedQueue
from pyresqueworker.client._client import NoQueueError
from pyresqueworker.client._unique import unique_digest
from pyresqueworker.client.delayed import DelayedQueue
from pyresqueworker.client.failed_queue import FailureFilter
from pyresqueworker.protocol import wire

NOW = 1_700_000_000
LATER = NOW + 3600
RETRIED_AT = "2024/01/15 09:51:00 UTC"
QUEUE_FOR = {"Known": "kq", "Mailer": "mail"}.get
ARGS = [1, "é", {"k": [1.5, None, True]}, 1.0e20, -0.0]

# A step: what to do with a client; returns the value (Client) or an awaitable (AsyncClient).
Step = Callable[[Any], Any]


def snapshot(r: redis.Redis, ns: str) -> dict[bytes, Any]:
    """Every key of namespace ``ns`` (without the prefix) with its type and exact contents."""
    found: dict[bytes, Any] = {}
    for key in r.scan_iter(match=ns + "*"):
        kind = r.type(key)
        value: Any
        if kind == b"string":
            value = r.get(key)
        elif kind == b"list":
            value = r.lrange(key, 0, -1)
        elif kind == b"set":
            value = sorted(r.smembers(key))
        elif kind == b"zset":
            value = r.zrange(key, 0, -1, withscores=True)
        else:
            value = sorted(r.hgetall(key).items())
        found[key[len(ns):]] = (kind, value, r.ttl(key) > 0)
    return found


def seed(r: redis.Redis, ns: str) -> None:
    """The same failures, a worker and queue contents in namespace ``ns``."""
    keys = wire.Keys(ns)

    def failure(queue: str, cls: str, args: list[Any], **extra: Any) -> str:
        return wire.dumps({"failed_at": "2024/01/15 09:50:00 UTC",
                           "payload": {"class": cls, "args": args}, "exception": "RuntimeError",
                           "error": "boom", "backtrace": [], "worker": "h:1:q", "queue": queue,
                           **extra})

    r.rpush(keys.failed, failure("q", "A", [1]), failure("other", "B", [2]), "not json",
            failure("q", "C", [], retried_at="2024/01/15 09:51:00 UTC"))
    worker = "host:4242:q,mail"
    r.sadd(keys.workers, worker)
    r.set(keys.worker(worker), wire.dumps({"queue": "q", "run_at": "2024-01-15T09:50:00Z",
                                           "payload": {"class": "A", "args": []}}))
    r.set(keys.worker_started(worker), "2024-01-15 09:49:00 +0000")
    r.set(keys.stat("processed", worker), 7)
    r.hset(keys.heartbeats, worker, "2024-01-15T09:50:01+00:00")
    r.rpush(keys.queue("hand"), wire.encode_job("Hand", [1]))  # pushed without the set


def fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "failed_at", lambda now=None: RETRIED_AT)


def comparable(result: Any) -> Any:
    """``result``, with a :class:`JobRef` made what both clients must agree on: its type, the
    time it was filed under, whether it is tracked, and its id unless a fresh one was drawn
    (32 hex digits, different on each call)."""
    if not isinstance(result, JobRef):
        return result
    job_id = "<fresh id>" if re.fullmatch("[0-9a-f]{32}", result.id) else result.id
    return (JobRef, job_id, result.scheduled_for, result.tracked)


def both(r: redis.Redis, redis_url: str, steps: Sequence[Step]) -> list[Any]:
    """Run ``steps`` with a Client in ``sync:`` and with an AsyncClient in ``async:``; assert
    equal results (see :func:`comparable`) and byte-equal keys; return the Client's results."""
    seed(r, "sync:")
    seed(r, "async:")
    client = Client(r, namespace="sync:", queue_for=QUEUE_FOR)
    client.clock = lambda: NOW
    expected = [step(client) for step in steps]

    async def run_async() -> list[Any]:
        async with AsyncClient(redis_url, namespace="async:", queue_for=QUEUE_FOR) as aclient:
            aclient.clock = lambda: NOW
            return [await step(aclient) for step in steps]

    assert [comparable(got) for got in asyncio.run(run_async())] == [
        comparable(want) for want in expected]
    assert snapshot(r, "async:") == snapshot(r, "sync:")
    return expected


WRITES: dict[str, list[Step]] = {
    "enqueue": [lambda c: c.enqueue("Known", *ARGS), lambda c: c.enqueue("X", 1, queue="q")],
    "enqueue_to with an id": [
        lambda c: c.enqueue_to("q", "A", *ARGS, job_id="j-1"),
    ],
    "enqueue_many": [lambda c: c.enqueue_many("q", [("A", [n]) for n in range(5)], batch=2)],
    "enqueue_at": [lambda c: c.enqueue_at(LATER, "Mailer", *ARGS),
                   lambda c: c.enqueue_at(NOW - 5, "Mailer", 2)],
    "enqueue_in": [lambda c: c.enqueue_in(90, "A", 1, queue="q"),
                   lambda c: c.enqueue_in(0, "A", 2, queue="q")],
    "unique": [lambda c: c.enqueue_unique("A", 1, queue="q"),
               lambda c: c.enqueue_unique("A", 1, queue="q"),
               lambda c: c.enqueue_unique_by_key("A", "k1", 2, queue="q"),
               lambda c: c.enqueue_unique_at(LATER, "A", 3, queue="q"),
               lambda c: c.enqueue_unique_in(60, "A", 4, queue="q", key={"id": 4})],
    "active job": [lambda c: c.enqueue_active_job("HelloJob", 1, "é", job_id="fixed",
                                                  name="x", queue="mail")],
    "remove_delayed": [lambda c: c.enqueue_at(LATER, "A", 1, queue="q"),
                       lambda c: c.enqueue_at(LATER + 1, "A", 1, queue="q"),
                       lambda c: c.remove_delayed("A", 1, queue="q"),
                       lambda c: c.delayed_count()],
    "dequeue": [lambda c: c.enqueue_to("q", "A", 1), lambda c: c.enqueue_to("q", "A", 2),
                lambda c: c.enqueue_to("q", "B", 1), lambda c: c.dequeue("A", 2, queue="q"),
                lambda c: c.dequeue("A", queue="q")],
    "queues and pausing": [lambda c: c.pause_queue("q"), lambda c: c.pause_all(),
                           lambda c: c.unpause_queue("x"), lambda c: c.remove_queue("hand")],
    "requeue and remove": [lambda c: c.requeue(0), lambda c: c.remove(1)],
    "requeue_all": [lambda c: c.requeue_all()],
    "requeue_queue": [lambda c: c.requeue_queue("other")],
    "requeue_matching": [lambda c: c.requeue_matching(FailureFilter(skip_retried=True),
                                                      batch_size=1)],
    "clear_retried": [lambda c: c.clear_retried()],
    "clear_failed": [lambda c: c.clear_failed()],
    "the delayed queue": [lambda c: c.delayed.enqueue_at(LATER, "Mailer", *ARGS),
                          lambda c: c.delayed.enqueue_at(NOW - 5, "A", 1, queue="q"),
                          lambda c: c.delayed.enqueue_in(60, "A", 2, queue="q"),
                          lambda c: c.delayed.enqueue_at(LATER, "A", 3, queue="q"),
                          lambda c: c.delayed.remove_delayed("A", 3, queue="q")],
}


@pytest.mark.parametrize("case", list(WRITES))
def test_every_write_is_byte_identical_to_the_blocking_clients(
    case: str, r: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed_time(monkeypatch)
    before = snapshot(r, "sync:")
    both(r, redis_url, WRITES[case])
    assert snapshot(r, "sync:") != before  # the case did write something


READINGS: list[Step] = [
    lambda c: c.size("hand"), lambda c: c.peek("hand"), lambda c: c.peek_raw("hand", 0, 5),
    lambda c: c.queues(), lambda c: c.paused_queues(), lambda c: c.all_paused(),
    lambda c: c.workers(), lambda c: c.working(), lambda c: c.heartbeats(),
    lambda c: c.failed_count(), lambda c: c.failed(0, 10), lambda c: c.delayed_count(),
]


def test_readings_equal_the_blocking_clients(r: redis.Redis, redis_url: str) -> None:
    results = both(r, redis_url, [lambda c: c.enqueue_at(LATER, "A", queue="q"),
                                  lambda c: c.pause_queue("q"), *READINGS])
    assert results[2:5] == [1, [{"class": "Hand", "args": [1]}],
                            [wire.encode_job("Hand", [1]).encode()]]
    assert results[8][0].processed == 7 and results[11] == 4


def test_delayed_readings_equal_the_blocking_clients(r: redis.Redis, redis_url: str) -> None:
    results = both(r, redis_url, [
        lambda c: c.delayed.enqueue_at(LATER, "A", 1, queue="q"),
        lambda c: c.delayed.enqueue_at(LATER, "B", queue="q"),
        lambda c: c.delayed.enqueue_at(LATER + 60, "A", 1, queue="q"),
        lambda c: c.delayed.scheduled_at("A", 1, queue="q"),
        lambda c: c.delayed.is_delayed("A", 1, queue="q"),
        lambda c: c.delayed.is_delayed("A", 2, queue="q"),
        lambda c: c.delayed.delayed_count(),
        lambda c: c.delayed.delayed_timestamps(),
        lambda c: c.delayed.delayed_at(LATER, 0, 1),
        lambda c: c.delayed.delayed_size(LATER),
    ])
    assert results[3:] == [[LATER, LATER + 60], True, False, 3, [LATER, LATER + 60],
                           [{"class": "A", "args": [1], "queue": "q"}], 2]


def test_info_equals_the_blocking_clients(r: redis.Redis, redis_url: str) -> None:
    seed(r, "resque:")

    async def info() -> dict[str, Any]:
        async with AsyncClient(redis_url) as client:
            return await client.info()

    expected = Client(redis_url).info()
    assert asyncio.run(info()) == expected
    assert expected["failed"] == 4 and expected["working"] == 1


def test_errors_are_the_blocking_clients(redis_url: str) -> None:
    async def failing() -> None:
        async with AsyncClient(redis_url, queue_for=None) as client:
            await client.enqueue("Unknown", 1)

    with pytest.raises(NoQueueError):
        asyncio.run(failing())


def test_callers_async_pipeline_gets_the_writes_and_runs_them(
    r: redis.Redis, redis_url: str
) -> None:
    async def main() -> list[Any]:
        async with AsyncClient(redis_url) as client:
            client.clock = lambda: NOW
            async with client.redis.pipeline(transaction=True) as pipe:
                pipe.set("mine", "1")
                await client.enqueue_to("q", "A", 1, pipeline=pipe)
                await client.enqueue_at(LATER, "A", 2, queue="q", pipeline=pipe)
                assert await client.enqueue_unique("U", queue="q", pipeline=pipe) is not None
                await client.enqueue_many("q", [("B", [1]), ("B", [2])], pipeline=pipe)
                await client.enqueue_active_job("HelloJob", pipeline=pipe, job_id="j")
                assert r.keys("resque:*") == []  # queued on the pipeline, nothing sent yet
                return list(await pipe.execute())

    replies = asyncio.run(main())
    assert replies[0] is True and r.get("mine") == b"1"
    assert r.lrange("resque:queue:q", 0, -1) == [
        b'{"class":"A","args":[1]}',
        f'{{"class":"U","args":[],"unique_key":"{unique_digest("U", [])}"}}'.encode(),
        b'{"class":"B","args":[1]}', b'{"class":"B","args":[2]}']
    assert r.zrange("resque:delayed_queue_schedule", 0, -1) == [str(LATER).encode()]
    assert r.llen("resque:queue:default") == 1


def test_close_and_async_with_close_an_owned_pool_only(redis_url: str) -> None:
    async def main() -> None:
        async with AsyncClient(url=redis_url) as client:
            await client.size("q")
            (connection,) = client.redis.connection_pool._available_connections
            assert connection.is_connected
        assert not connection.is_connected
        given = redis.asyncio.Redis.from_url(redis_url)
        await AsyncClient(given).close()
        assert await given.ping() is True  # the caller's client stays usable
        await given.aclose()

    asyncio.run(main())
    client = Client(redis_url)  # the blocking client's own pool is closed with it too
    client.size("q")
    (connection,) = client.redis.connection_pool._available_connections
    client.close()
    assert connection._sock is None


SYNC_ON_BOTH = {"batch"}  # AsyncClient.batch returns an AsyncBatch, entered with async with


@pytest.mark.parametrize(("awaited_class", "blocking_class"), [
    (AsyncClient, Client), (AsyncDelayedQueue, DelayedQueue)])
def test_api_matches_the_blocking_client(awaited_class: type, blocking_class: type) -> None:
    """Same public methods, parameters and documentation; each one awaited, except
    ``batch``: on both a plain call whose batch is then used with ``with`` / ``async with``
    (so it documents that)."""
    names = [name for name in vars(awaited_class) if not name.startswith("_")]
    assert len(names) > 8
    for name in names:
        if isinstance(vars(awaited_class)[name], property):  # AsyncClient.delayed
            assert isinstance(vars(blocking_class)[name], property), name
            continue
        blocking, awaited = getattr(blocking_class, name), getattr(awaited_class, name)
        if name in SYNC_ON_BOTH:
            assert not inspect.iscoroutinefunction(awaited), name
            assert not inspect.iscoroutinefunction(blocking), name
            assert "async with" in (awaited.__doc__ or ""), name
        else:
            assert inspect.iscoroutinefunction(awaited), name
            assert awaited.__doc__ == blocking.__doc__, name
        sync_sig, async_sig = inspect.signature(blocking), inspect.signature(awaited)
        assert list(async_sig.parameters) == list(sync_sig.parameters), name
        for param, other in zip(async_sig.parameters.values(), sync_sig.parameters.values()):
            assert (param.kind, param.default) == (other.kind, other.default), (name, param)
    assert set(vars(blocking_class)) - set(vars(awaited_class)) <= {"schedules", "clock"}
    assert list(inspect.signature(awaited_class).parameters) == list(
        inspect.signature(blocking_class).parameters)


@pytest.mark.ruby
def test_ruby_dequeues_what_the_async_client_enqueued(
    ruby: str, redis_url: str, r: redis.Redis
) -> None:
    from test_ruby_interop import json_lines, run_ruby

    async def main() -> None:
        async with AsyncClient(redis_url) as client:
            await client.enqueue_to("interop", "Other::Job", *ARGS)
            await client.enqueue_to("interop", "Golden::Job", *ARGS)

    asyncio.run(main())
    proc = run_ruby(ruby, redis_url, "dequeue", "interop", "Golden::Job", json.dumps(ARGS))
    assert json_lines(proc) == [1]
    assert r.lrange("resque:queue:interop", 0, -1) == [
        wire.encode_job("Other::Job", ARGS).encode()]
