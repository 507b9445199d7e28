"""Connecting: URLs, ACL users, TLS with client certificates, Sentinel; no leaked secrets."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from servers import server_binary

from pyresqueworker.protocol.connection import (
    ConfigError,
    TLSFiles,
    connect,
    connect_async,
    describe,
    redact_url,
)
from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._claim import NO_FINISH, SUCCESS, Claimed, Claimer
from tests.conftest import RedisServer, free_port, tls_redis_server


def test_redact_url_hides_passwords_everywhere() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://:s3cret@host/0") == "redis://:***@host/0"
    assert "s3cret" not in redact_url("redis+sentinel://h:1/m?sentinel_password=s3cret")


def test_unsupported_scheme_is_a_clear_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        connect("http://user:s3cret@host/0")
    assert "s3cret" not in str(info.value) and "redis://" in str(info.value)


def test_acl_user_and_password_from_the_url(tmp_path: Path) -> None:
    acl = tmp_path / "users.acl"
    acl.write_text("user worker on >s3cret ~* &* +@all\nuser default off\n")
    server = RedisServer(("--aclfile", str(acl)))
    try:
        client = connect(f"redis://worker:s3cret@127.0.0.1:{server.port}/0")
        assert client.ping() is True
        bad = connect(f"redis://worker:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(redis.exceptions.AuthenticationError) as info:
            bad.ping()
        assert "wrong" not in str(info.value) and "s3cret" not in repr(bad)
        assert "s3cret" not in describe(client)
        assert asyncio.run(ping_async(f"redis://worker:s3cret@127.0.0.1:{server.port}/0"))
        with pytest.raises(redis.exceptions.AuthenticationError):
            asyncio.run(ping_async(f"redis://worker:wrong@127.0.0.1:{server.port}/0"))
    finally:
        server.stop()


async def ping_async(url: str, tls: TLSFiles | None = None) -> bool:
    """Connect with :func:`connect_async`, set and read a key back; True when it worked."""
    client = connect_async(url, tls=tls)
    try:
        await client.set("async-key", b"v")
        return bool(await client.get("async-key") == b"v")
    finally:
        await client.aclose(close_connection_pool=True)


def test_tls_with_ca_and_client_certificate(tls_files: Path) -> None:
    server = tls_redis_server(tls_files)
    port = server.port
    try:
        files = TLSFiles(ca=str(tls_files / "ca.crt"), cert=str(tls_files / "client.crt"),
                         key=str(tls_files / "client.key"))
        client = connect(f"rediss://127.0.0.1:{port}/0", tls=files)
        client.set("k", b"v")
        assert client.get("k") == b"v"
        untrusted = connect(f"rediss://127.0.0.1:{port}/0")
        with pytest.raises(redis.exceptions.ConnectionError):
            untrusted.ping()
        assert asyncio.run(ping_async(f"rediss://127.0.0.1:{port}/0", tls=files))
        with pytest.raises(redis.exceptions.ConnectionError):
            asyncio.run(ping_async(f"rediss://127.0.0.1:{port}/0"))
        # A slot's own TLS socket takes large items too (no sendmsg there: the parts are joined).
        slot = connect(f"rediss://127.0.0.1:{port}/0", tls=files, single_connection_client=True)
        claimer = Claimer(slot, Keys("resque:"), "host:1:q")
        items = [json.dumps({"class": "Big", "args": [n, "x" * 300_000]}).encode()
                 for n in range(2)]
        client.rpush("resque:queue:q", *items)
        run_at = "2024-01-15T09:50:00Z"
        assert claimer.claim(["q"], NO_FINISH, run_at) == Claimed("q", items[0], True)
        assert claimer.claim(["q"], SUCCESS, run_at) == Claimed("q", items[1], True)
        assert (client.get("resque:worker:host:1:q") or b"").endswith(items[1] + b"}")
    finally:
        server.stop()


@pytest.fixture
def sentinel_port(redis_server: RedisServer) -> Iterator[int]:
    """A Sentinel on a free port monitoring the session's Redis as ``mymaster``."""
    folder = Path(tempfile.mkdtemp(prefix="pyresque-sentinel-"))
    port = free_port()
    conf = folder / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
        f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n"
    )
    process = subprocess.Popen([server_binary(), str(conf), "--sentinel"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "sentinel did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(folder, ignore_errors=True)


def test_sentinel_url_finds_the_master(sentinel_port: int, r: redis.Redis) -> None:
    client = connect(f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0")
    client.set("through-sentinel", b"yes")
    assert r.get("through-sentinel") == b"yes"
    assert describe(client) == "sentinel service mymaster"


def test_async_sentinel_url_finds_the_master(sentinel_port: int, r: redis.Redis) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0"
    assert asyncio.run(ping_async(url))
    assert r.get("async-key") == b"v"
    assert describe(connect_async(url)) == "sentinel service mymaster"


def test_async_cluster_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cluster"):
        connect_async("redis+cluster://127.0.0.1:7000/")


def test_sentinel_url_without_a_service_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        connect("redis+sentinel://127.0.0.1:26379")
