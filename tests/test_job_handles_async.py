"""The asyncio twins of job handles (``aenqueue*``) and the per-loop default AsyncClient."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from pyresqueworker import (
    AsyncClient,
    Client,
    JobHandle,
    JobRef,
    Registry,
    configure,
    default_async_client,
)
from pyresqueworker.protocol.wire import encode_delayed_item, encode_job

FUTURE = 4102444800  # 2100-01-01T00:00:00Z: never due while the test runs


def make_archive() -> JobHandle[[str, int], None]:
    reg = Registry()

    @reg.job("Jobs::Archive", queue="files")
    def archive(path: str, level: int = 6) -> None: ...

    return archive


def test_the_async_twins_write_what_the_blocking_client_writes(
        default_client_url: str, r: redis.Redis) -> None:
    archive = make_archive()

    async def main() -> tuple[JobRef, JobRef, JobRef, JobRef]:
        return (await archive.aenqueue("a.txt", level=9),
                await archive.aenqueue_to("other", "b.txt", 1),
                await archive.aenqueue_at(FUTURE, "c.txt", 2),
                await archive.aenqueue_in(0, "d.txt", 3))

    refs = asyncio.run(main())
    assert all(isinstance(ref, JobRef) for ref in refs)
    client = Client(default_client_url)
    try:
        client.enqueue_to("files", "Jobs::Archive", "a.txt", 9)
    finally:
        client.close()
    assert (refs[2].scheduled_for, refs[3].scheduled_for) == (FUTURE, None)
    first = encode_job("Jobs::Archive", ["a.txt", 9]).encode()  # the handle's = the client's
    assert r.lrange("resque:queue:files", 0, -1) == [first,
                                 encode_job("Jobs::Archive", ["d.txt", 3]).encode(),
                                 first]
    assert r.lrange("resque:queue:other", 0, -1) == [
        encode_job("Jobs::Archive", ["b.txt", 1]).encode()]
    assert r.lrange(f"resque:delayed:{FUTURE}", 0, -1) == [
        encode_delayed_item("Jobs::Archive", ["c.txt", 2], "files").encode()]


def test_aenqueue_in_files_a_delayed_item(default_client_url: str, r: redis.Redis) -> None:
    archive = make_archive()
    stamp = asyncio.run(archive.aenqueue_in(3600, "e.txt", 4)).scheduled_for
    assert stamp is not None
    assert r.zrange("resque:delayed_queue_schedule", 0, -1) == [str(stamp).encode()]
    assert r.lrange(f"resque:delayed:{stamp}", 0, -1) == [
        encode_delayed_item("Jobs::Archive", ["e.txt", 4], "files").encode()]


def test_the_async_twins_check_arguments_like_the_blocking_ones(
        default_client_url: str, r: redis.Redis) -> None:
    archive = make_archive()
    with pytest.raises(TypeError, match="missing a required argument"):
        asyncio.run(archive.aenqueue())  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="by position"):
        asyncio.run(JobHandle("Ruby::Mailer", queue="mail").aenqueue(to="x"))
    assert not r.exists("resque:queue:files", "resque:queue:mail")


def test_using_an_async_client(redis_url: str, r: redis.Redis) -> None:
    archive = make_archive()

    async def main() -> JobRef:
        async with AsyncClient(redis_url, namespace="mine:") as client:
            bound = archive.using(client)
            with pytest.raises(TypeError, match="uses an AsyncClient: call the aenqueue"):
                bound.enqueue("x", 1)
            return await bound.aenqueue("f.txt", 5)

    assert isinstance(asyncio.run(main()), JobRef)
    assert r.lrange("mine:queue:files", 0, -1) == [
        encode_job("Jobs::Archive", ["f.txt", 5]).encode()]


def test_one_default_async_client_per_running_loop(default_client_url: str) -> None:
    async def twice() -> tuple[Any, Any]:
        return default_async_client(), default_async_client()

    first = asyncio.run(twice())
    second = asyncio.run(twice())
    assert first[0] is first[1] and second[0] is second[1]
    assert first[0] is not second[0]  # the first one's connections belong to a closed loop
    with pytest.raises(RuntimeError):
        default_async_client()  # no running loop here


def test_configure_closes_the_async_client_of_a_running_loop(
        default_client_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_archive()
    closed: list[AsyncClient] = []
    original = AsyncClient.close

    async def close(self: AsyncClient) -> None:
        closed.append(self)
        await original(self)

    monkeypatch.setattr(AsyncClient, "close", close)

    async def main() -> None:
        await archive.aenqueue("g.txt", 1)
        old = default_async_client()
        configure(default_client_url)
        assert default_async_client() is not old
        for _ in range(100):  # the close runs as a task on this loop, soon
            if closed:
                break
            await asyncio.sleep(0.01)
        assert closed == [old]

    asyncio.run(main())
