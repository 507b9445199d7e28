"""Real Redis topologies and a TCP fault proxy, for fault-injection tests.

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
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

HOST = "127.0.0.1"
MASTER_NAME = "mymaster"
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
        self, extra_args: Sequence[str] = (), *, sentinel_conf: Sequence[str] | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary, self.port, self._args = binary, free_port(), list(extra_args)
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
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.process = process

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log_tail()}")
            with client_for(self.port, socket_timeout=1.0) as client:
                return bool(client.ping())

        wait_for(up, timeout, f"redis-server on port {self.port}")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError), open(self.log, encoding="utf-8") as handle:
            return f"--- port {self.port}:\n" + "".join(handle.readlines()[-lines:])
        return f"--- port {self.port}: no log"

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


def _reset_on_close(sock: socket.socket) -> None:
    # SO_LINGER 0: close() sends RST instead of FIN, like a firewall dropping state.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Link:
    """One proxied connection. Only its serving thread closes the sockets, after the other
    pump thread is done, so no thread can ever use an fd number that was closed under it."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def attach(self, upstream: socket.socket | None) -> bool:
        with self._lock:
            self.upstream = upstream
            return not self.closed.is_set()  # False: cut while connecting

    def abort(self, reset: bool) -> None:
        """Shut both sockets down, which wakes any thread blocked on them; idempotent."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            socks = [sock for sock in (self.client, self.upstream) if sock is not None]
        for sock in socks:
            if reset:
                _reset_on_close(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class FaultProxy(_Closing):
    """A TCP proxy on a free loopback port in front of one Redis, with switchable faults.
    One thread accepts; each connection has a blocking thread per direction, so 50 idle worker
    connections cost 100 sleeping threads and no CPU."""

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._blackholed = self._refusing = self._closed = False
        self._latency = 0.0
        # Binding port 0 ourselves leaves no window in which someone else takes the port.
        self._listener = socket.create_server((HOST, 0), backlog=256)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    @property
    def connections(self) -> int:
        """Client connections currently open through the proxy."""
        with self._lock:
            return len(self._links)

    def cut(self) -> None:
        """Reset all current client and upstream connections (SO_LINGER 0 plus shutdown: the
        peers see FIN then RST). New connections are accepted as normal."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.abort(reset=True)

    def blackhole(self, on: bool) -> None:
        """While on, bytes both ways are dropped silently and new connections are accepted but
        never connected upstream. Turning it off cuts every connection open at that moment:
        their byte streams lost data, so they could not be trusted again anyway."""
        with self._lock:
            stale = list(self._links) if self._blackholed and not on else []
            self._blackholed = on
        for link in stale:
            link.abort(reset=True)

    def refuse(self, on: bool) -> None:
        """While on, new connections are reset right after accept; open ones keep working."""
        with self._lock:
            self._refusing = on

    def latency(self, seconds: float) -> None:
        """Delay each forwarded chunk, in both directions, by ``seconds`` (0 = none)."""
        self._latency = max(0.0, seconds)

    def retarget(self, port: int, host: str = HOST) -> None:
        """Connections accepted from now on go to another upstream; open ones stay put."""
        with self._lock:
            self._target = (host, port)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.01)  # e.g. out of file descriptors: back off, don't spin
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                link = None if self._refusing or self._closed else _Link(client)
                target = None if self._blackholed else self._target
                if link is not None:
                    self._links.add(link)
            if link is None:
                _reset_on_close(client)
                client.close()
            else:
                threading.Thread(target=self._serve, args=(link, target), daemon=True).start()

    def _serve(self, link: _Link, target: tuple[str, int] | None) -> None:
        """Pump client -> upstream here and upstream -> client in a helper thread. Without a
        target (accepted while black-holed) the client's bytes are just swallowed."""
        upstream = helper = None
        try:
            if target is not None:
                upstream = socket.create_connection(target, timeout=5.0)
                upstream.settimeout(None)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                helper = threading.Thread(
                    target=self._pump, args=(link, upstream, link.client), daemon=True
                )
            if link.attach(upstream):
                if helper is not None:
                    helper.start()
                self._pump(link, link.client, upstream)
        except OSError:
            link.abort(reset=True)  # upstream unreachable: the client sees a reset
        finally:
            link.abort(reset=False)
            if helper is not None and helper.is_alive():
                helper.join()
            for sock in (link.client, upstream):
                if sock is not None:
                    sock.close()
            with self._lock:
                self._links.discard(link)

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        """Copy until EOF (passed on as FIN) or an error (passed on as RST)."""
        try:
            while data := source.recv(65536):
                delay = self._latency
                if delay > 0 and link.closed.wait(delay):  # an abort ends the delay early
                    return
                if sink is not None and not self._blackholed:
                    sink.sendall(data)
        except OSError:
            link.abort(reset=True)
        link.abort(reset=False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        # shutdown() wakes the thread blocked in accept(); close the fd once it has left.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        self._listener.close()
        self.cut()
        # So that a test can count server-side clients right after close(); never stuck long,
        # since shutdown() also wakes a thread blocked in send().
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: self.connections == 0, 5, "proxy connections to close")


# -- sentinel -----------------------------------------------------------------------------------


class SentinelGroup(_Closing):
    """A master, one replica and three sentinels (quorum 2, down-after 1 s) for ``mymaster``.
    ``nodes`` maps port to data node; which one is master changes with failovers."""

    def __init__(self, min_replicas: bool = False, timeout: float = 30.0) -> None:
        # Redis 7 waits 5 s before a diskless full sync to gather replicas; we have one.
        self._data_args = ["--repl-diskless-sync-delay", "0"]
        if min_replicas:
            self._data_args += ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"]
        self.nodes: dict[int, RedisNode] = {}
        self.sentinels: list[RedisNode] = []
        self._killed: int | None = None
        try:
            master = RedisNode(self._data_args)
            self.nodes[master.port] = master
            replica = RedisNode([*self._data_args, "--replicaof", HOST, str(master.port)])
            self.nodes[replica.port] = replica
            self._wait(lambda: info(replica.port).get("master_link_status") == "up", timeout,
                       "the replica to sync")
            conf = [
                "sentinel resolve-hostnames no",
                f"sentinel monitor {MASTER_NAME} {HOST} {master.port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                f"sentinel failover-timeout {MASTER_NAME} 10000",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
            ]
            self.sentinels = [RedisNode(sentinel_conf=conf) for _ in range(3)]
            self._wait_sentinels_see_all(timeout)
        except BaseException:
            self.close()
            raise

    @property
    def sentinel_ports(self) -> list[int]:
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def _wait(self, condition: Callable[[], T | None], timeout: float, what: str) -> T:
        nodes = [*self.nodes.values(), *self.sentinels]
        return wait_for(condition, timeout, what, _log_tails(nodes))

    def _sentinel(self, port: int, *args: str) -> Any:
        with client_for(port, socket_timeout=2.0) as client:
            return client.execute_command("SENTINEL", *args)

    @staticmethod
    def _fields(item: Any) -> dict[str, str]:
        # redis-py 8 returns a dict per instance; older versions a flat key/value list.
        pairs = item.items() if isinstance(item, dict) else zip(item[::2], item[1::2])
        return {str(key): str(value) for key, value in pairs}

    def _wait_sentinels_see_all(self, timeout: float) -> None:
        """Until each sentinel knows the other two and one healthy replica of the current
        master, a failover may lack its quorum or fail with NOGOODSLAVE."""

        def sees_all(port: int) -> bool:
            state = self._fields(self._sentinel(port, "MASTER", MASTER_NAME))
            replicas = [self._fields(r) for r in self._sentinel(port, "REPLICAS", MASTER_NAME)]
            return (state["num-other-sentinels"] == "2" and len(replicas) == 1
                    and replicas[0]["flags"] == "slave"
                    and replicas[0]["master-link-status"] == "ok"
                    and replicas[0]["master-port"] == state["port"])

        for port in self.sentinel_ports:
            self._wait(lambda port=port: sees_all(port), timeout, f"sentinel {port} to be ready")

    def _master_according_to(self, sentinel_port: int) -> int:
        return int(self._sentinel(sentinel_port, "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)[1])

    def master_port(self) -> int:
        """The master's port according to the first sentinel that answers."""
        for port in self.sentinel_ports:
            with contextlib.suppress(redis.RedisError, OSError):
                return self._master_according_to(port)
        raise RuntimeError("no sentinel answered")

    def replica_port(self) -> int:
        master = self.master_port()
        return next(port for port in self.nodes if port != master)

    def master(self, **kwargs: Any) -> redis.Redis:
        return client_for(self.master_port(), **kwargs)

    def replica(self, **kwargs: Any) -> redis.Redis:
        return client_for(self.replica_port(), **kwargs)

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        return self._kill(self.master_port())

    def kill_replica(self) -> int:
        """SIGKILL the current replica; returns its port."""
        return self._kill(self.replica_port())

    def _kill(self, port: int) -> int:
        self.nodes[port].kill()
        self._killed = port
        return port

    def failover(self) -> None:
        """SENTINEL FAILOVER: the first sentinel promotes the replica without asking others."""
        self._sentinel(self.sentinel_ports[0], "FAILOVER", MASTER_NAME)

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until all sentinels name one master other than ``old_port`` and that node says
        ``role:master``; returns its port."""

        def settled() -> int | None:
            named = {self._master_according_to(port) for port in self.sentinel_ports}
            new = named.pop() if len(named) == 1 else old_port
            return new if new != old_port and info(new)["role"] == "master" else None

        return self._wait(settled, timeout, f"a master other than {old_port}")

    def wait_until_replica_of(self, port: int, master_port: int, timeout: float = 30.0) -> None:
        def linked() -> bool:
            state = info(port)
            return (state["role"] == "slave" and int(state["master_port"]) == master_port
                    and state["master_link_status"] == "up")

        self._wait(linked, timeout, f"{port} to become a replica of {master_port}")

    def restart_killed(self, as_replica: bool = False, timeout: float = 60.0) -> int:
        """Start the killed node again on its port (empty: nothing is persisted); wait until
        the master reports ``connected_slaves:1`` and every sentinel sees a healthy replica
        (so another failover can follow at once). Returns the master's port.

        By default the node boots as a stand-alone master, like a crashed master coming back,
        and the sentinels demote it, which takes them about 20 s (they wait 8 s and poll INFO
        every 10 s); ``as_replica=True`` boots it as a replica of the current master (~1 s).
        """
        if self._killed is None:
            raise RuntimeError("nothing was killed")
        port, self._killed = self._killed, None
        master = self.wait_for_new_master(port, timeout)
        replica_args = ["--replicaof", HOST, str(master)] if as_replica else []
        self.nodes[port].start([*self._data_args, *replica_args])
        self._wait(lambda: info(master)["connected_slaves"] == 1, timeout,
                   f"{port} to rejoin as a replica of {master}")
        self.wait_until_replica_of(port, master, timeout)
        self._wait_sentinels_see_all(timeout)
        return master

    def close(self) -> None:
        for node in [*self.sentinels, *self.nodes.values()]:
            node.close()


# -- cluster ------------------------------------------------------------------------------------


class RedisCluster3(_Closing):
    """Three cluster masters, no replicas, owning all 16384 slots between them."""

    def __init__(self, timeout: float = 30.0) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed")
        self.nodes: list[RedisNode] = []
        try:
            for _ in range(3):
                # An explicit bus port: the default, port + 10000, fails for ports over 55535.
                self.nodes.append(RedisNode([
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000", "--cluster-port", str(free_port()),
                ]))
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


# allow-oom (a Redis 7 script flag) lets this run while Redis is full; the value is built inside
# Redis, so the request itself is tiny.
_OVERSHOOT = """#!lua flags=allow-oom
redis.call('SET', KEYS[1], string.rep('x', tonumber(ARGV[1])))
"""


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
            client.eval(_OVERSHOOT, 1, f"{key_prefix}overshoot", 1_000_000)
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
