"""The fault-injection helpers in fault_servers.py do what they promise, against real servers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import redis.sentinel
from fault_proxy import FaultProxy
from fault_sentinel import MASTER_NAME, SentinelGroup
from fault_servers import (
    HOST,
    RedisCluster3,
    RedisNode,
    client_for,
    fill_memory,
    free_memory,
    free_port,
    info,
    start_maxmemory_redis,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RedisNode, RedisNode]]:
    """Two plain servers that tell themselves apart by the ``who`` key."""
    with RedisNode() as a, RedisNode() as b:
        a.client().set("who", "a")
        b.client().set("who", "b")
        yield a, b


@pytest.fixture
def proxy(servers: tuple[RedisNode, RedisNode]) -> Iterator[FaultProxy]:
    with FaultProxy(servers[0].port) as fault_proxy:
        yield fault_proxy


# -- FaultProxy ---------------------------------------------------------------------------------


def test_proxy_forwards_and_cut_breaks_open_connections(proxy: FaultProxy) -> None:
    with redis.Redis.from_url(proxy.url(), decode_responses=True) as via_url:
        assert via_url.get("who") == "a"
    wait_for(lambda: proxy.connections == 0, 5, "the closed client to be forgotten")
    with client_for(proxy.port, single_connection_client=True) as client:
        assert client.ping()
        assert proxy.connections == 1
        proxy.cut()
        with pytest.raises(redis.ConnectionError):
            client.ping()
    wait_for(lambda: proxy.connections == 0, 5, "cut connections to be forgotten")
    assert client_for(proxy.port).get("who") == "a"


def test_proxy_blackhole_times_out_and_recovers(proxy: FaultProxy) -> None:
    with client_for(proxy.port, socket_timeout=0.5, single_connection_client=True) as client:
        assert client.ping()
        with socket.create_connection((HOST, proxy.port), timeout=5) as raw:
            proxy.blackhole(True)
            with pytest.raises(redis.TimeoutError):
                client.ping()  # an open connection: the request vanishes
            with pytest.raises(redis.TimeoutError):
                client_for(proxy.port, socket_timeout=0.5).ping()  # so does a new one
            raw.settimeout(0.5)
            raw.sendall(b"PING\r\n")
            with pytest.raises(socket.timeout):
                raw.recv(100)
            proxy.blackhole(False)
            # Documented choice: connections open when the blackhole ends are cut.
            raw.settimeout(5)
            try:
                ended = raw.recv(100) == b""  # FIN, then RST
            except ConnectionResetError:
                ended = True
            assert ended
    assert client_for(proxy.port, socket_timeout=0.5).get("who") == "a"


def test_proxy_refuse_rejects_new_connections_only(proxy: FaultProxy) -> None:
    with client_for(proxy.port, single_connection_client=True) as open_before:
        assert open_before.ping()
        proxy.refuse(True)
        with pytest.raises(redis.ConnectionError):
            client_for(proxy.port).ping()
        assert open_before.ping()
        proxy.refuse(False)
    assert client_for(proxy.port).ping()


def test_proxy_latency_delays_round_trips(proxy: FaultProxy) -> None:
    with client_for(proxy.port, single_connection_client=True) as client:
        assert client.ping()
        proxy.latency(0.2)
        started = time.perf_counter()
        assert client.ping()
        assert time.perf_counter() - started >= 0.2
        proxy.latency(0)
        assert client.ping()


def test_proxy_retarget_moves_new_connections(
    proxy: FaultProxy, servers: tuple[RedisNode, RedisNode]
) -> None:
    with client_for(proxy.port, single_connection_client=True) as before:
        assert before.get("who") == "a"
        proxy.retarget(servers[1].port)
        assert client_for(proxy.port).get("who") == "b"
        assert before.get("who") == "a"  # open connections keep their upstream
    proxy.retarget(free_port())  # nothing listens there: the client sees the connection drop
    with pytest.raises(redis.ConnectionError):
        client_for(proxy.port).ping()


def test_proxy_carries_many_connections_and_closes(proxy: FaultProxy) -> None:
    clients = [client_for(proxy.port, single_connection_client=True) for _ in range(50)]
    with ThreadPoolExecutor(50) as pool:
        assert all(pool.map(lambda client: client.ping(), clients))
    assert proxy.connections == 50
    for client in clients:
        client.close()
    wait_for(lambda: proxy.connections == 0, 5, "closed clients to be forgotten")
    proxy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, proxy.port), timeout=5)


# -- SentinelGroup ------------------------------------------------------------------------------


def test_sentinel_elects_new_master_after_kill_and_old_one_rejoins() -> None:
    with SentinelGroup() as group:
        hosts = ",".join(f"{HOST}:{port}" for port in group.sentinel_ports)
        assert group.url == f"redis+sentinel://{hosts}/{MASTER_NAME}/0"
        master = group.master()
        master.set("before", "1")
        assert master.wait(1, 5000) == 1  # on the replica before the crash
        old = group.kill_master()
        new = group.wait_for_new_master(old, timeout=30)
        assert new != old

        sentinel = redis.sentinel.Sentinel(
            [(HOST, port) for port in group.sentinel_ports], socket_timeout=1,
            decode_responses=True,
        )
        assert sentinel.discover_master(MASTER_NAME) == (HOST, new)
        discovered = sentinel.master_for(MASTER_NAME)
        assert discovered.get("before") == "1"
        discovered.set("after", "1")

        # as_replica: the default (a stale master the sentinels demote) takes ~20 s more, and
        # that demotion is what test_sentinel_failover_swaps_roles already waits for.
        assert group.restart_killed(as_replica=True) == new
        assert info(old)["role"] == "slave"
        assert group.replica_port() == old


def test_sentinel_min_replicas_refuses_writes_without_replica() -> None:
    with SentinelGroup(min_replicas=True) as group:
        master = group.master()
        master.set("k", "1")
        group.kill_replica()

        def write_refused() -> bool:
            try:
                master.set("k", "2")
            except redis.ResponseError as error:
                return "NOREPLICAS" in str(error)
            return False

        wait_for(write_refused, 10, "the master to notice it has no replica")
        with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
            master.set("k", "3")
        group.restart_killed(as_replica=True, timeout=30)
        assert wait_for(lambda: master.set("k", "4"), 10, "writes to be accepted again")


# -- RedisCluster3 ------------------------------------------------------------------------------


def test_cluster_routes_keys_by_slot() -> None:
    with RedisCluster3() as cluster:
        for port in cluster.ports:
            assert "cluster_state:ok" in cluster.node(port).execute_command("CLUSTER", "INFO")
        key = "{resque}:x"
        owner, other = cluster.owner_port(key), cluster.non_owner_port(key)
        assert owner != other
        assert cluster.seed_url(owner) == f"redis://{HOST}:{owner}/0"
        with pytest.raises(redis.exceptions.MovedError) as moved:
            cluster.node(other).get(key)
        assert moved.value.port == owner
        client = cluster.client()
        try:
            client.set(key, "v")
            assert client.get(key) == "v"
        finally:
            client.close()
        assert cluster.node(owner).get(key) == "v"


# -- maxmemory ----------------------------------------------------------------------------------


def test_maxmemory_redis_fills_up_and_frees() -> None:
    with start_maxmemory_redis("20mb") as server:
        client = server.client()
        written = fill_memory(client)
        assert written > 0
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("one-more", "x")
        assert free_memory(client) == written
        assert client.set("one-more", "x")
