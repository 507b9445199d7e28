"""Typed job handles: what ``@job`` returns for a function, class handles, Ruby-only handles,
the default client behind ``.enqueue`` and the keyword-argument rule."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import pyresqueworker
from pyresqueworker import (
    Client,
    JobHandle,
    JobRef,
    NoQueueError,
    Registry,
    configure,
    default_client,
)
from pyresqueworker.jobs.testing import perform_enqueued, run_inline
from pyresqueworker.protocol.wire import encode_delayed_item, encode_job

APPS = Path(__file__).resolve().parent / "apps"
FUTURE = 4102444800  # 2100-01-01T00:00:00Z: never due while the test runs

_MODULE_REGISTRY = Registry()


@_MODULE_REGISTRY.job("Tests::Pickled", queue="p")
def pickled(n: int) -> int:
    return n + 1


def plain_module_function(n: int) -> int:
    return n * 3


@pytest.fixture
def client(redis_url: str) -> Iterator[Client]:
    made = Client(redis_url)
    yield made
    made.close()


def items(r: redis.Redis, queue: str) -> list[bytes]:
    return list(r.lrange(f"resque:queue:{queue}", 0, -1))


# -- a decorated function is a handle that still behaves as the function -----------------------


def test_decorated_function_is_a_handle_that_still_runs_the_function() -> None:
    reg = Registry()

    @reg.job("Jobs::Archive", queue="files")
    def archive(path: str, level: int = 6) -> str:
        """Archive a file."""
        return f"{path}:{level}"

    assert isinstance(archive, JobHandle)
    assert archive("a.txt", 9) == "a.txt:9"
    assert (archive.__name__, archive.__doc__, archive.__module__) == (
        "archive", "Archive a file.", __name__)
    assert archive.__qualname__.endswith("<locals>.archive")
    assert (archive.name, archive.queue) == ("Jobs::Archive", "files")
    handler = reg.handler("Jobs::Archive")
    assert handler.target is archive.__wrapped__ and not handler.is_async
    assert run_inline({"class": "Jobs::Archive", "args": ["b", 1]}, registry=reg) == "b:1"


def test_bare_decorator_async_function_and_cron_all_give_handles() -> None:
    reg = Registry()

    @reg.job
    def plain() -> str:
        return "p"

    @reg.job("Fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    @reg.job("Nightly", queue="low", cron="0 3 * * *")
    def nightly() -> None: ...

    assert isinstance(plain, JobHandle) and plain.name == "plain" and plain() == "p"
    assert reg.handler("Fetch").is_async  # the worker still sees an async function
    assert reg.handler("Fetch").target is fetch.__wrapped__
    assert asyncio.run(fetch(4)) == 8
    assert run_inline({"class": "Fetch", "args": [5]}, registry=reg) == 10
    assert [s.name for s in reg.periodic_schedules()] == ["Nightly"]
    assert isinstance(nightly, JobHandle)


def test_a_handle_registered_again_registers_its_function() -> None:
    first, second = Registry(), Registry()

    @first.job("Jobs::Copy", queue="files")
    def copy(n: int) -> int:
        return n

    again = second.job(copy)
    assert isinstance(again, JobHandle) and again.name == "Jobs::Copy"
    assert second.handler("Jobs::Copy").target is copy.__wrapped__
    second.register("Other", copy)
    assert second.handler("Other").target is copy.__wrapped__


def test_the_module_level_job_returns_a_handle_of_the_default_registry(
        client: Client, r: redis.Redis) -> None:
    @pyresqueworker.job("Tests::HandleDefaultRegistry", queue="dq")
    def helper(n: int) -> None: ...

    assert pyresqueworker.default_registry.handler("Tests::HandleDefaultRegistry").target \
        is helper.__wrapped__
    helper.using(client).enqueue(1)
    assert items(r, "dq") == [b'{"class":"Tests::HandleDefaultRegistry","args":[1]}']


def test_module_level_handles_pickle_by_reference_and_others_by_value() -> None:
    assert pickle.loads(pickle.dumps(pickled)) is pickled
    made = pickle.loads(pickle.dumps(JobHandle(plain_module_function, name="Triple")))
    assert (made.name, made(2)) == ("Triple", 6)
    ruby = pickle.loads(pickle.dumps(JobHandle("Ruby::Mailer", queue="mail")))
    assert (ruby.name, ruby.queue, ruby.target) == ("Ruby::Mailer", "mail", None)


# -- enqueueing writes what the Client writes ---------------------------------------------------


def test_enqueue_writes_the_bytes_client_enqueue_writes(client: Client, r: redis.Redis) -> None:
    reg = Registry()

    @reg.job("Jobs::Archive", queue="files")
    def archive(path: str, level: int = 6) -> None: ...

    ref = archive.using(client).enqueue("a.txt", 9)
    assert isinstance(ref, JobRef) and ref.scheduled_for is None
    client.enqueue_to("files", "Jobs::Archive", "a.txt", 9)
    expected = b'{"class":"Jobs::Archive","args":["a.txt",9]}'
    assert items(r, "files") == [expected] * 2
    assert r.smembers("resque:queues") == {b"files"}


def test_enqueue_to_overrides_the_queue_and_a_queueless_job_needs_one(
        client: Client, r: redis.Redis) -> None:
    reg = Registry()

    @reg.job("Jobs::Loose")
    def loose(n: int) -> None: ...

    with pytest.raises(NoQueueError):
        loose.using(client).enqueue(1)
    loose.using(client).enqueue_to("elsewhere", 2)
    assert items(r, "elsewhere") == [encode_job("Jobs::Loose", [2]).encode()]


def test_enqueue_at_and_in_write_resque_schedulers_items(client: Client, r: redis.Redis) -> None:
    reg = Registry()

    @reg.job("Jobs::Later", queue="later")
    def later(n: int) -> None: ...

    bound = later.using(client)
    assert bound.enqueue_at(FUTURE, 1).scheduled_for == FUTURE
    assert client.enqueue_at(FUTURE, "Jobs::Later", 1, queue="later").scheduled_for == FUTURE
    expected = encode_delayed_item("Jobs::Later", [1], "later").encode()
    assert r.lrange(f"resque:delayed:{FUTURE}", 0, -1) == [expected, expected]
    stamp = bound.enqueue_in(3600, 2).scheduled_for
    assert stamp is not None and stamp != FUTURE
    assert r.lrange(f"resque:delayed:{stamp}", 0, -1) == [
        encode_delayed_item("Jobs::Later", [2], "later").encode()]
    # due already: straight to its queue, as Ruby does
    assert bound.enqueue_in(0, 3).scheduled_for is None
    assert items(r, "later") == [encode_job("Jobs::Later", [3]).encode()]


def test_what_a_handle_enqueued_runs_inline(client: Client) -> None:
    reg = Registry()
    seen: list[Any] = []

    @reg.job("Jobs::Collect", queue="collect")
    def collect(a: int, b: str = "x") -> None:
        seen.append((a, b))

    collect.using(client).enqueue(1)
    collect.using(client).enqueue(2, b="y")
    perform_enqueued(client, "collect", registry=reg)
    assert seen == [(1, "x"), (2, "y")]


def test_a_worker_runs_what_handles_enqueued(
        default_client_url: str, r: redis.Redis, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker_helpers import wait_until

    monkeypatch.syspath_prepend(str(APPS))
    import handle_jobs

    handle_jobs.add.enqueue(2, b=3)
    handle_jobs.async_add.enqueue(4, 5)
    handle_jobs.mail.enqueue("a@example.com")
    assert len(items(r, "handles")) == 3
    spawn_worker("--app", "handle_jobs", "--queues", "handles")
    done = wait_until(lambda: r.llen("test:handles") == 3 and r.lrange("test:handles", 0, -1),
                      "the three jobs to run")
    assert sorted(json.loads(line) for line in done) == [
        ["add", 2, 3], ["async_add", 4, 5], ["mail", "a@example.com", "hello"]]
    assert r.get("resque:stat:failed") is None


# -- the keyword-argument rule ------------------------------------------------------------------


def test_keywords_for_positional_parameters_are_sent_in_place(
        client: Client, r: redis.Redis) -> None:
    reg = Registry()

    @reg.job("K", queue="k")
    def k(a: int, b: int = 2, c: int = 3) -> None: ...

    bound = k.using(client)
    bound.enqueue(a=1)
    bound.enqueue(1, c=5)  # the gap before c gets b's default
    bound.enqueue(1, 7)
    assert [json.loads(item)["args"] for item in items(r, "k")] == [[1], [1, 2, 5], [1, 7]]


def test_calls_the_signature_refuses_raise_before_anything_is_written(
        client: Client, r: redis.Redis) -> None:
    reg = Registry()

    @reg.job("Flagged", queue="k")
    def flagged(a: int, *, loud: bool = False) -> None: ...

    @reg.job("Loose", queue="k")
    def loose(**options: Any) -> None: ...

    with pytest.raises(TypeError, match=r"'loud' cannot be enqueued.*positional args only"):
        flagged.using(client).enqueue(1, loud=True)
    with pytest.raises(TypeError, match="'x' cannot be enqueued"):
        loose.using(client).enqueue(x=1)
    with pytest.raises(TypeError, match="'Flagged': missing a required argument: 'a'"):
        flagged.using(client).enqueue()
    with pytest.raises(TypeError, match="too many positional arguments"):
        flagged.using(client).enqueue(1, 2)
    assert items(r, "k") == []
    flagged.using(client).enqueue(1)  # a keyword-only parameter left to its default is fine
    assert items(r, "k") == [b'{"class":"Flagged","args":[1]}']


# -- class handlers -----------------------------------------------------------------------------


def test_a_decorated_class_stays_the_class_and_its_handle_enqueues_perform_args(
        client: Client, r: redis.Redis) -> None:
    reg = Registry()
    sent: list[Any] = []

    @reg.job("Mailer::Deliver", queue="mail")
    class Deliver:
        def perform(self, to: str, subject: str = "hi") -> str:
            sent.append((to, subject))
            return to

    assert isinstance(Deliver, type) and isinstance(Deliver(), Deliver)
    handle = reg.handle_for(Deliver)
    assert (handle.name, handle.queue, handle.__wrapped__) == ("Mailer::Deliver", "mail", Deliver)
    assert handle("a@b") == "a@b"  # calling runs perform on a fresh instance
    handle.using(client).enqueue("c@d", subject="yo")
    assert items(r, "mail") == [b'{"class":"Mailer::Deliver","args":["c@d","yo"]}']
    perform_enqueued(client, "mail", registry=reg)
    assert sent == [("a@b", "hi"), ("c@d", "yo")]
    with pytest.raises(TypeError, match="missing a required argument"):
        handle.using(client).enqueue()


def test_a_class_handle_made_directly_reads_the_class_queue_and_static_perform(
        client: Client, r: redis.Redis) -> None:
    class Report:
        queue = "reports"

        @staticmethod
        def perform(day: str) -> str:
            return f"report {day}"

    handle = JobHandle(Report)
    assert (handle.name, handle.queue, handle("mon")) == ("Report", "reports", "report mon")
    handle.using(client).enqueue(day="tue")
    assert items(r, "reports") == [b'{"class":"Report","args":["tue"]}']
    with pytest.raises(LookupError, match="not registered"):
        Registry().handle_for(Report)
    with pytest.raises(TypeError, match="no callable 'perform'"):
        JobHandle(type("Empty", (), {}))


# -- Ruby-only handles --------------------------------------------------------------------------


def test_a_ruby_only_handle_enqueues_any_positional_args(client: Client, r: redis.Redis) -> None:
    mailer = JobHandle("Ruby::Mailer", queue="mail")
    mailer.using(client).enqueue("x@y", 1, {"cc": None})
    client.enqueue_to("mail", "Ruby::Mailer", "x@y", 1, {"cc": None})
    assert items(r, "mail") == [b'{"class":"Ruby::Mailer","args":["x@y",1,{"cc":null}]}'] * 2
    with pytest.raises(TypeError, match="no Python body"):
        mailer("x@y")
    with pytest.raises(TypeError, match="by position"):
        mailer.using(client).enqueue(to="x@y")
    with pytest.raises(TypeError, match="no Python body to register"):
        Registry().register("Ruby::Mailer", mailer)
    with pytest.raises(TypeError, match="takes no other name"):
        JobHandle("Ruby::Mailer", name="Other")  # type: ignore[call-overload]


# -- the default client -------------------------------------------------------------------------


def test_configure_sets_the_client_handles_use(
        default_client_url: str, r: redis.Redis, client: Client) -> None:
    reg = Registry()

    @reg.job("Jobs::Default", queue="dflt")
    def default_job(n: int) -> None: ...

    default_job.enqueue(1)
    assert items(r, "dflt") == [b'{"class":"Jobs::Default","args":[1]}']
    first = default_client()
    assert default_client() is first
    configure(default_client_url, namespace="other:")
    assert default_client() is not first
    default_job.enqueue_to("q2", 2)
    assert r.lrange("other:queue:q2", 0, -1) == [b'{"class":"Jobs::Default","args":[2]}']
    with pytest.raises(TypeError, match="uses a Client: call the enqueue"):
        default_job.using(client).aenqueue(3).send(None)


def test_without_configure_the_environment_is_read_as_the_cli_reads_it(
        redis_url: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PYRESQUE_REDIS", "RESQUE_REDIS_URL", "PYRESQUE_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    configure()
    try:
        JobHandle("Env::Job", queue="env").enqueue(1)
        monkeypatch.setenv("PYRESQUE_REDIS", redis_url)
        monkeypatch.setenv("PYRESQUE_NAMESPACE", "envns:")
        configure()
        JobHandle("Env::Job", queue="env").enqueue(2)
    finally:
        configure()
    assert items(r, "env") == [b'{"class":"Env::Job","args":[1]}']
    assert r.lrange("envns:queue:env", 0, -1) == [b'{"class":"Env::Job","args":[2]}']


def test_threads_starting_together_share_one_default_client(default_client_url: str) -> None:
    configure(default_client_url)  # no client made yet
    barrier = threading.Barrier(8)
    made: list[Client] = []

    def take() -> None:
        barrier.wait()
        made.append(default_client())

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 8 and all(client is made[0] for client in made)
