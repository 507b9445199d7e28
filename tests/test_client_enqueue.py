"""Client enqueue/dequeue against a real Redis: Ruby's commands, order and bytes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from conftest import GOLDEN

from pyresqueworker import JobRef
from pyresqueworker.client._client import Client, NoClassError, NoQueueError


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(r)


def golden_bytes(case: str) -> str:
    with open(GOLDEN / "enqueue-oj.json", encoding="utf-8") as handle:
        return str(json.load(handle)[case]["bytes"])


def monitored(redis_url: str, action: Any, last: str) -> list[str]:
    """Run ``action`` under MONITOR; return the data commands it sent, up to one starting
    with ``last``."""
    watcher = redis.Redis.from_url(redis_url, socket_timeout=5)
    commands = []
    with watcher.monitor() as monitor:
        action()
        while True:
            command = monitor.next_command()["command"]
            if command.split(" ", 1)[0] in ("CLIENT", "HELLO", "PING"):
                continue  # connection setup by redis-py, not ours
            commands.append(command)
            if command.startswith(last):
                break
    watcher.close()
    return commands


def test_enqueue_to_is_sadd_then_rpush_with_ruby_bytes(
    client: Client, r: redis.Redis, redis_url: str
) -> None:
    client.redis.ping()  # open the pooled connection before MONITOR starts
    args = [1.0, 2.5, 1.0e20, 1.0e-07, -0.0, 123456789.123]
    refs: list[JobRef] = []
    commands = monitored(
        redis_url, lambda: refs.append(client.enqueue_to("golden", "Golden::Job", *args)), "RPUSH"
    )
    assert len(refs) == 1 and isinstance(refs[0], JobRef)  # the bytes: read back below
    # One script call whose writes are Resque.push's, in its order (MONITOR shows both).
    writes = [c for c in commands if not c.startswith(("EVALSHA", "SCRIPT"))]
    assert [c.split(" ", 1)[0] for c in writes] == ["SADD", "RPUSH"]
    commands = writes
    assert commands[0] == "SADD resque:queues golden"
    assert commands[1].startswith("RPUSH resque:queue:golden ")
    assert r.lrange("resque:queue:golden", 0, -1) == [golden_bytes("floats").encode()]
    assert r.smembers("resque:queues") == {b"golden"}


def test_enqueue_unicode_is_raw_utf8(client: Client, r: redis.Redis) -> None:
    args = ["é", "日本語", "emoji 😀", 'quote " backslash \\ slash /']
    client.enqueue_to("golden", "Golden::Job", *args)
    assert r.lindex("resque:queue:golden", 0) == golden_bytes("unicode").encode("utf-8")


def test_enqueue_uses_the_resolver_for_the_default_queue(r: redis.Redis) -> None:
    client = Client(r, queue_for={"Archive": "low"}.get)
    client.enqueue("Archive", 35, "tar")
    assert r.lrange("resque:queue:low", 0, -1) == [b'{"class":"Archive","args":[35,"tar"]}']
    client.enqueue("Archive", 1, queue="high")  # an explicit queue wins
    assert r.llen("resque:queue:high") == 1
    with pytest.raises(NoQueueError, match="Unknown"):
        client.enqueue("Unknown", 1)  # resolver knows no queue


def test_enqueue_without_queue_or_resolver_raises(client: Client, r: redis.Redis) -> None:
    with pytest.raises(NoQueueError, match="No queue could be inferred for class 'Archive'"):
        client.enqueue("Archive", 1)
    assert issubclass(NoQueueError, ValueError)
    with pytest.raises(NoQueueError):
        client.enqueue_to("", "Archive")
    with pytest.raises(NoClassError):
        client.enqueue_to("q", "")
    assert r.keys("*") == []  # nothing half-written


def test_enqueue_refuses_what_ruby_cannot_encode(client: Client, r: redis.Redis) -> None:
    with pytest.raises(ValueError):
        client.enqueue_to("q", "X", float("nan"))
    with pytest.raises(TypeError):
        client.enqueue_to("q", "X", object())
    assert r.keys("*") == []


def test_enqueue_namespace(r: redis.Redis) -> None:
    client = Client(r, namespace="{resque}")
    client.enqueue_to("q", "X", 1)
    assert set(r.keys("*")) == {b"{resque}:queues", b"{resque}:queue:q"}


def _jobs(count: int) -> Iterator[tuple[str, list[Any]]]:
    for n in range(count):
        yield ("Bulk", [n, "x"])


def test_enqueue_many_batches_one_sadd_and_one_rpush_each(
    client: Client, r: redis.Redis, redis_url: str
) -> None:
    client.redis.ping()
    pushed: list[int] = []

    def action() -> None:
        pushed.append(client.enqueue_many("bulk", _jobs(2500), batch=1000))
        client.redis.echo("end")  # marks the end of the bulk commands in the MONITOR stream

    commands = monitored(redis_url, action, "ECHO")
    assert pushed == [2500]
    names = [c.split(" ", 1)[0] for c in commands[:-1]]
    assert names == ["SADD", "RPUSH"] * 3
    items = r.lrange("resque:queue:bulk", 0, -1)
    assert len(items) == 2500
    assert items[0] == b'{"class":"Bulk","args":[0,"x"]}'
    assert items[-1] == b'{"class":"Bulk","args":[2499,"x"]}'
    assert [json.loads(i)["args"][0] for i in items] == list(range(2500))  # order kept


def test_enqueue_many_empty_and_bad_batch(client: Client, r: redis.Redis) -> None:
    assert client.enqueue_many("bulk", []) == 0
    assert r.keys("*") == []  # no job, so the queue is not registered either
    with pytest.raises(ValueError):
        client.enqueue_many("bulk", _jobs(1), batch=0)


def test_enqueue_many_stops_at_a_bad_job(client: Client, r: redis.Redis) -> None:
    jobs = [("Bulk", [n]) for n in range(5)] + [("Bulk", [float("inf")])] + [("Bulk", [9])]
    with pytest.raises(ValueError):
        client.enqueue_many("bulk", jobs, batch=3)
    # the first full batch was sent, the batch holding the bad job was not
    assert r.llen("resque:queue:bulk") == 3


def test_dequeue_is_byte_exact(client: Client, r: redis.Redis) -> None:
    ruby_item = golden_bytes("floats")  # written by Ruby
    r.rpush("resque:queue:q", ruby_item, ruby_item, '{"class":"Golden::Job","args":[2]}')
    # same job, other key order: Ruby's LREM would not match it, neither do we
    r.rpush("resque:queue:q", '{"args":[1.0,2.5,1.0e+20,1.0e-07,-0.0,123456789.123],'
                              '"class":"Golden::Job"}')
    removed = client.dequeue(
        "Golden::Job", 1.0, 2.5, 1.0e20, 1.0e-07, -0.0, 123456789.123, queue="q"
    )
    assert removed == 2
    assert client.size("q") == 2
    assert client.dequeue("Golden::Job", 3, queue="q") == 0


def test_dequeue_without_args_removes_every_job_of_the_class(
    client: Client, r: redis.Redis
) -> None:
    r.rpush(
        "resque:queue:q",
        '{"class":"A","args":[1]}',
        '{"class":"B","args":[1]}',
        "not json",
        '{"class":"A","args":[2],"extra":true}',
        '{"class":"A","args":[1]}',
    )
    assert client.dequeue("A", queue="q") == 3
    assert r.lrange("resque:queue:q", 0, -1) == [b'{"class":"B","args":[1]}', b"not json"]
    assert client.dequeue("A", queue="q") == 0


def test_enqueue_active_job_matches_rails_payload(client: Client, r: redis.Redis) -> None:
    from pyresqueworker.jobs.activejob import RubySymbol

    with open(GOLDEN / "activejob-6.1-payload.json", encoding="utf-8") as handle:
        golden_text = handle.read().strip()
    golden = json.loads(golden_text)
    golden_data = golden["args"][0]

    # HelloJob.perform_later('world', 42, {'plain' => 1, sym: :x},
    #                        greeting: 'hi', at: Time.utc(2024,1,15,9,50,0))
    job_id = client.enqueue_active_job(
        "HelloJob",
        "world",
        42,
        {"plain": 1, RubySymbol("sym"): RubySymbol("x")},
        greeting="hi",
        at=datetime(2024, 1, 15, 9, 50, 0, tzinfo=timezone.utc),
        job_id=golden_data["job_id"],
    )
    assert job_id == golden_data["job_id"]
    (raw,) = r.lrange("resque:queue:default", 0, -1)
    ours = json.loads(raw)
    assert list(ours) == ["class", "args"] and ours["class"] == golden["class"]
    data = ours["args"][0]
    # Rails 7.1+ adds scheduled_at at the end; every 6.1 key is there, in 6.1's order.
    assert list(data) == [*golden_data, "scheduled_at"]
    assert data["scheduled_at"] is None
    for key in ("job_class", "provider_job_id", "queue_name", "priority", "executions",
                "exception_executions", "locale", "timezone"):
        assert data[key] == golden_data[key], key
    # the arguments are byte-identical to what ActiveJob wrote
    arguments = golden_text[golden_text.index('"arguments":') : golden_text.index(',"executions"')]
    assert arguments.encode() in raw
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", data["enqueued_at"])
    assert r.smembers("resque:queues") == {b"default"}


def test_enqueue_active_job_defaults(client: Client, r: redis.Redis) -> None:
    job_id = client.enqueue_active_job("MailJob", queue="mail", priority=5, locale="de",
                                       timezone="Europe/Berlin")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", job_id)
    data = json.loads(r.lindex("resque:queue:mail", 0) or b"")["args"][0]
    assert (data["job_id"], data["queue_name"], data["priority"]) == (job_id, "mail", 5)
    assert (data["locale"], data["timezone"], data["arguments"]) == ("de", "Europe/Berlin", [])
    with pytest.raises(NoClassError):
        client.enqueue_active_job("")


def test_enqueue_inside_the_callers_transaction_is_all_or_nothing(
    client: Client, r: redis.Redis
) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.hset("orders:1", "state", "placed")
        client.enqueue_to("mail", "Receipt", 1, pipeline=pipe)
        assert r.llen("resque:queue:mail") == 0  # queued on the pipeline, not sent
        pipe.execute()
    assert r.lrange("resque:queue:mail", 0, -1) == [b'{"class":"Receipt","args":[1]}']
    assert r.hget("orders:1", "state") == b"placed" and r.sismember("resque:queues", "mail")
    r.set("guard", "0")
    with r.pipeline(transaction=True) as pipe:
        pipe.watch("guard")
        pipe.multi()
        pipe.set("guard", "1")
        client.enqueue("Receipt", 2, queue="mail", pipeline=pipe)
        r.set("guard", "changed")  # someone else writes: the transaction must abort
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.llen("resque:queue:mail") == 1


def test_enqueue_many_joins_the_callers_transaction_or_nothing_is_queued(
    r: redis.Redis,
) -> None:
    client = Client(r)
    with r.pipeline(transaction=True) as pipe:
        pipe.set("import:1", "done")
        client.enqueue_many("jobs", [("Row", [i]) for i in range(5)], batch=2, pipeline=pipe)
        assert r.llen("resque:queue:jobs") == 0  # nothing sent before execute
        pipe.execute()
    assert r.llen("resque:queue:jobs") == 5 and r.get("import:1") == b"done"


def test_active_job_enqueue_joins_the_callers_transaction(r: redis.Redis) -> None:
    client = Client(r)
    with r.pipeline(transaction=True) as pipe:
        job_id = client.enqueue_active_job("HelloJob", 1, queue="default", pipeline=pipe)
        assert r.llen("resque:queue:default") == 0
        pipe.execute()
    [raw] = r.lrange("resque:queue:default", 0, -1)
    assert json.loads(raw)["args"][0]["job_id"] == job_id


def test_a_url_may_be_given_positionally(redis_url: str, r: redis.Redis) -> None:
    client = Client(redis_url)  # as redis.Redis.from_url users write it
    try:
        client.enqueue_to("q", "Job", 1)
        assert r.llen("resque:queue:q") == 1
    finally:
        client.close()
    with pytest.raises(TypeError, match="once"):
        Client(redis_url, url=redis_url)


def test_enqueue_finds_the_queue_of_a_handler_registered_in_this_process(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyresqueworker.jobs import registry

    fresh = registry.Registry()
    monkeypatch.setattr(registry.default_registry, "_handlers", fresh._handlers)

    @registry.job("Jobs::Archive", queue="files")
    def archive(_item: int) -> None: ...

    Client(r).enqueue("Jobs::Archive", 1)
    assert r.llen("resque:queue:files") == 1
    with pytest.raises(NoQueueError):
        Client(r, queue_for=None).enqueue("Jobs::Archive", 2)
