"""One Redis URL and one namespace from one environment, for every entry point.

Two real redis-servers: the environment names one in the variable read first and the other in
a later one. ``Client()``, ``AsyncClient()``, the default client, a job handle, the
``pyresque`` and ``pyresque-scheduler`` command lines, ``WorkerConfig``, a real
``pyresque-work`` and Django's ``get_client`` must all land on the first, under
``PYRESQUE_NAMESPACE``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner
from worker_helpers import ROOT, command

from pyresqueworker import AsyncClient, Client, WorkerConfig, configure, default_client
from pyresqueworker.cli.admin.cli import main as admin_main
from pyresqueworker.cli.scheduler import main as scheduler_main
from pyresqueworker.cli.work import work
from pyresqueworker.jobs.handles import JobHandle
from pyresqueworker.protocol.connection import (
    NAMESPACE_ENV,
    REDIS_ENV,
    ConnectionFactory,
    resolve_url,
)
from pyresqueworker.protocol.queues import QueueSpec
from tests.conftest import RedisServer

NS = "envns:"
QUEUE = f"{NS}queue:q"


@pytest.fixture(scope="module")
def second_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(params=["PYRESQUE_REDIS", "RESQUE_REDIS_URL"])
def chosen(request: pytest.FixtureRequest, redis_server: RedisServer,
           second_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The environment of the issue: the variable read first (``request.param``) names one
    server, the later ones the other (both on db 3); yields the chosen server's db 3. The
    default clients follow the environment meanwhile."""
    wanted = f"redis://127.0.0.1:{second_server.port}/3"
    other = f"redis://127.0.0.1:{redis_server.port}/3"
    first = REDIS_ENV.index(request.param)
    for index, name in enumerate(REDIS_ENV):
        if index < first:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, wanted if index == first else other)
    monkeypatch.setenv(NAMESPACE_ENV, NS)
    servers = [redis.Redis(port=s.port, db=3) for s in (second_server, redis_server)]
    for server in servers:
        server.flushdb()
    configure()  # drop default clients made under another environment
    yield servers[0]
    configure()
    assert servers[1].keys("*") == [], "something wrote to the server named later"
    for server in servers:
        server.flushdb()
        server.close()


def landed(r: redis.Redis) -> list[object]:
    return [json.loads(item)["args"][0] for item in r.lrange(QUEUE, 0, -1)]


def test_clients_handles_and_configs_read_the_same_redis_and_namespace(
        chosen: redis.Redis) -> None:
    client = Client()
    client.enqueue_to("q", "Job", "Client")
    client.close()

    async def enqueue_async() -> None:
        async with AsyncClient() as aio:
            await aio.enqueue_to("q", "Job", "AsyncClient")
        await JobHandle("Job", queue="q").aenqueue("aenqueue")

    asyncio.run(enqueue_async())
    default_client().enqueue_to("q", "Job", "default_client")
    JobHandle("Job", queue="q").enqueue("handle")
    assert landed(chosen) == ["Client", "AsyncClient", "aenqueue", "default_client", "handle"]

    config = WorkerConfig(QueueSpec.parse("q"))  # run_worker(...) from Python
    assert config.namespace == NS
    port = chosen.connection_pool.connection_kwargs["port"]
    assert ConnectionFactory(config.redis_url).locator_seed() == ("127.0.0.1", port)


def test_the_command_lines_read_the_same_redis_and_namespace(chosen: redis.Redis) -> None:
    result = CliRunner().invoke(admin_main, ["enqueue", "Job", '["pyresque"]', "-q", "q"])
    assert result.exit_code == 0, result.output
    assert landed(chosen) == ["pyresque"]
    port = chosen.connection_pool.connection_kwargs["port"]
    for cli, name, args in ((work, "pyresque-work", ["--queues", "q"]),
                            (scheduler_main, "pyresque-scheduler", [])):
        params = cli.make_context(name, args).params  # what the command's config is built from
        assert resolve_url(params["redis_url"]) == f"redis://127.0.0.1:{port}/3", name
        assert params["namespace"] == NS, name


def test_pyresque_work_works_the_queue_the_clients_write_to(chosen: redis.Redis) -> None:
    chosen.rpush(QUEUE, '{"class":"Job","args":["worked"]}')
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PYRESQUE_") or name in (*REDIS_ENV, NAMESPACE_ENV)}
    result = subprocess.run([*command(), "--queues", "q", "--interval", "0"], env=env,
                            cwd=str(ROOT), capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert chosen.llen(QUEUE) == 0  # taken where the clients write (and failed: no handler)
    assert chosen.llen(f"{NS}failed") == 1


def test_django_get_client_reads_the_same_redis_and_namespace(chosen: redis.Redis) -> None:
    pytest.importorskip("django")
    script = ("from django.conf import settings; settings.configure(PYRESQUE={}); "
              "from pyresqueworker.contrib.django import get_client; "
              "get_client().enqueue_to('q', 'Job', 'django')")
    result = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert landed(chosen) == ["django"]
