"""A Sentinel-managed Redis: master, one replica and three ``redis-server --sentinel``
(quorum 2), with kill, ``SENTINEL FAILOVER`` and restart helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from fault_servers import HOST, RedisNode, _Closing, _log_tails, client_for, info, wait_for

MASTER_NAME = "mymaster"
T = TypeVar("T")


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

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until another failover could start: every sentinel sees the others and a healthy
        replica of the current master."""
        self._wait_sentinels_see_all(timeout)

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
