"""Real Redis servers for fault-injection tests: single nodes, a 3-master cluster, a
``maxmemory`` Redis (the Sentinel group is in fault_sentinel.py, the TCP proxy in
fault_proxy.py).

Everything listens on 127.0.0.1, on free ports, each server in its own temp directory; every
object has ``close()`` (SIGTERM, then SIGKILL, then the directories go) and is a context
manager. Waiting always polls a condition against a deadline (``wait_for``). Clients made here
decode to ``str`` and never retry: redis-py 6+ retries 10 times by default, which would hide
the very faults these tests inject.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry
from servers import cli_binary, current, server_binary

HOST = "127.0.0.1"
T = TypeVar("T")

def free_port() -> int:
    """A port the kernel just handed out (it could be taken again before use; rare enough)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy and return that. Redis and socket
    errors mean "not yet" (the thing polled is usually starting or failing over). The timeout
    error carries ``explain()`` (server logs) so that a CI failure can be understood."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except (redis.RedisError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            details = f"\n{explain()}" if explain is not None else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{details}")
        time.sleep(0.05)


def terminate(process: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM a server, SIGKILL it if it is still there after ``grace`` seconds; reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def client_for(port: int, db: int = 0, **kwargs: Any) -> redis.Redis:
    """A decoding, non-retrying client for a loopback port; ``kwargs`` override."""
    options: dict[str, Any] = {
        "socket_timeout": 5.0, "socket_connect_timeout": 5.0,
        "decode_responses": True, "retry": Retry(NoBackoff(), 0),
    }
    return redis.Redis(host=HOST, port=port, db=db, **{**options, **kwargs})


def info(port: int, section: str = "replication") -> dict[str, Any]:
    """INFO over a short-lived connection, so that polling leaks no connections."""
    with client_for(port, socket_timeout=2.0) as client:
        return dict(client.info(section))


class _Closing:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisNode(_Closing):
    """One redis-server (a sentinel if ``sentinel_conf`` is given) on a free port, own dir.
    ``kill()`` keeps port and dir so that ``start()`` can bring the node back."""

    def __init__(
        self, extra_args: Sequence[str] = (), *, sentinel_conf: Sequence[str] | None = None,
        port: int | None = None,
    ) -> None:
        binary = server_binary()
        self.binary, self.port, self._args = binary, port or free_port(), list(extra_args)
        self.url = f"redis://{HOST}:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="pyresque-fault-")
        self.log = os.path.join(self.dir, "redis.log")
        self.process: subprocess.Popen[bytes] | None = None
        self._conf: str | None = None
        if sentinel_conf is not None:
            # Sentinel rewrites its config file as it learns, so it lives in our dir.
            self._conf = os.path.join(self.dir, "sentinel.conf")
            lines = [f"port {self.port}", f"bind {HOST}", f"dir {self.dir}",
                     f"logfile {self.log}", "daemonize no", *sentinel_conf]
            with open(self._conf, "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def start(self, extra_args: Sequence[str] | None = None, timeout: float = 10.0) -> None:
        """(Re)start on the same port and dir; ``extra_args`` replaces the remembered ones."""
        if extra_args is not None:
            self._args = list(extra_args)
        argv = [self.binary, self._conf, "--sentinel"] if self._conf else [
            self.binary, "--port", str(self.port), "--bind", HOST, "--dir", self.dir,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", self.log,
            *self._args,
        ]
        # A bad option is said on stderr, before the log file is opened.
        with open(os.path.join(self.dir, "stderr.log"), "ab") as stderr:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        self.process = process

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log_tail()}")
            with client_for(self.port, socket_timeout=1.0) as client:
                return bool(client.ping())

        wait_for(up, timeout, f"redis-server on port {self.port}")

    def log_tail(self, lines: int = 20) -> str:
        said: list[str] = []
        for path in (os.path.join(self.dir, "stderr.log"), self.log):
            with contextlib.suppress(OSError), open(path, encoding="utf-8") as handle:
                said += handle.readlines()
        return f"--- port {self.port}:\n" + ("".join(said[-lines:]) or "no log")

    def client(self, **kwargs: Any) -> redis.Redis:
        return client_for(self.port, **kwargs)

    def kill(self) -> None:
        """SIGKILL, like a crashed host: no shutdown, clients just see their sockets close."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)

    close = stop


def _log_tails(nodes: Sequence[RedisNode]) -> Callable[[], str]:
    return lambda: "\n".join(node.log_tail() for node in nodes)


# -- cluster ------------------------------------------------------------------------------------


def _cluster_ports() -> tuple[int, list[str]]:
    """A node's port and the arguments that give its cluster bus a port too.

    The bus defaults to port + 10000, which fails for ports over 55535; Redis 7 and Valkey take
    an explicit ``--cluster-port``, 6.2 does not, so there the node gets a low enough port
    whose port + 10000 is free as well."""
    if current().version_tuple() >= (7,):
        return free_port(), ["--cluster-port", str(free_port())]
    for _ in range(1000):
        port = free_port()
        if port > 55535:
            continue
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind((HOST, port + 10000))
            return port, []
    raise RuntimeError("no free port with a free cluster bus port (port + 10000)")


class RedisCluster3(_Closing):
    """Three cluster masters, no replicas, owning all 16384 slots between them."""

    def __init__(self, timeout: float = 30.0) -> None:
        cli = cli_binary()
        self.nodes: list[RedisNode] = []
        try:
            for _ in range(3):
                port, bus = _cluster_ports()
                self.nodes.append(RedisNode([
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000", *bus,
                ], port=port))
            addresses = [f"{HOST}:{port}" for port in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                 "--cluster-yes"], check=True, capture_output=True, timeout=timeout,
            )
            for port in self.ports:
                wait_for(lambda port=port: self._node_ok(port), timeout, f"cluster node {port}",
                         _log_tails(self.nodes))
        except BaseException:
            self.close()
            raise

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def _node_ok(self, port: int) -> bool:
        with client_for(port, socket_timeout=2.0) as client:
            text = str(client.execute_command("CLUSTER", "INFO"))
            lines = str(client.execute_command("CLUSTER", "NODES")).splitlines()
        state = dict(line.split(":", 1) for line in text.split() if ":" in line)
        # CLUSTER NODES fields: id addr flags master ping pong epoch link-state slots...
        masters = [f for f in map(str.split, lines)
                   if "master" in f[2] and "fail" not in f[2] and f[7] == "connected"]
        return (state.get("cluster_state") == "ok" and len(masters) == 3
                and state.get("cluster_slots_ok") == "16384")

    def seed_url(self, port: int) -> str:
        return f"redis://{HOST}:{port}/0"

    def owner_port(self, key: str) -> int:
        """Port of the master owning ``key``'s hash slot, according to ``CLUSTER SLOTS``."""
        slot = key_slot(key.encode())
        with client_for(self.ports[0]) as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        for first, last, master, *_replicas in ranges:
            if first <= slot <= last:
                return int(master[1])
        raise RuntimeError(f"slot {slot} is not assigned")

    def non_owner_port(self, key: str) -> int:
        owner = self.owner_port(key)
        return next(port for port in self.ports if port != owner)

    def client(self, **kwargs: Any) -> RedisCluster:
        return RedisCluster(host=HOST, port=self.ports[0], **{"decode_responses": True, **kwargs})

    def node(self, port: int, **kwargs: Any) -> redis.Redis:
        return client_for(port, **kwargs)

    def close(self) -> None:
        for node in self.nodes:
            node.close()


# -- maxmemory ----------------------------------------------------------------------------------


def start_maxmemory_redis(maxmemory: str = "20mb") -> RedisNode:
    """A Redis that answers writes with OOM once ``maxmemory`` is used (noeviction)."""
    return RedisNode(["--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"])


# The value is built inside Redis, so the request itself is tiny.
_OVERSHOOT = "redis.call('SET', KEYS[1], string.rep('x', tonumber(ARGV[1])))"


def fill_memory(
    client: redis.Redis, key_prefix: str = "fill:", value_size: int = 100_000,
    max_keys: int = 2_000,
) -> int:
    """Write ``value_size``-byte values until Redis answers OOM, then push memory ~1 MB past
    maxmemory; returns the number of keys written (``max_keys`` bounds the loop).

    The push is needed because the refused write was refused partly for its own 100 KB
    request buffer; once that is freed Redis may sit just under the limit and take small
    writes, and "the next SET fails" would be a coin toss.
    """
    value = b"x" * value_size
    for written in range(max_keys):
        try:
            client.set(f"{key_prefix}{written}", value)
        except redis.exceptions.OutOfMemoryError:
            # Lifting the limit for one write is what works on every server: Redis 7's
            # allow-oom script flag is unknown to 6.2, whose scripts cannot write when full.
            limit = next(iter(client.config_get("maxmemory").values()))  # str or bytes
            client.config_set("maxmemory", 0)
            try:
                client.eval(_OVERSHOOT, 1, f"{key_prefix}overshoot", 1_000_000)
            finally:
                client.config_set("maxmemory", limit or 0)
            return written + 1
    raise RuntimeError(f"no OOM after {max_keys} keys: is maxmemory set?")


def free_memory(client: redis.Redis, key_prefix: str = "fill:", batch: int = 500) -> int:
    """UNLINK every key starting with ``key_prefix``, SCANning in batches; returns the count."""
    deleted = 0
    keys: list[Any] = []
    for key in client.scan_iter(match=f"{key_prefix}*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += int(client.unlink(*keys))
            keys.clear()
    if keys:
        deleted += int(client.unlink(*keys))
    return deleted
