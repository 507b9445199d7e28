"""Redis Cluster: worker, client, admin CLI and dashboard through any node.

A real 3-master cluster (tests/fault_servers.py). With the ``{resque}:`` namespace every key
lives in one hash slot, so one node serves them all; pointed at a node that does not own
that slot, every connection follows the ``MOVED`` reply to the owner.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from admin_helpers import invoke
from fault_helpers import FaultRun, run_command
from fault_servers import RedisCluster3
from web_helpers import WsgiClient
from worker_helpers import worker_env

from pyresqueworker import Client
from pyresqueworker.protocol.connection import connect, describe
from pyresqueworker.web.app import make_app

pytestmark = pytest.mark.slow

NS = "{resque}:"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster3]:
    nodes = RedisCluster3()
    yield nodes
    nodes.close()


@pytest.fixture
def owner(cluster: RedisCluster3) -> Iterator[redis.Redis]:
    """A plain client on the node that owns the namespace's slot, emptied first."""
    conn = redis.Redis(port=cluster.owner_port(NS + "queues"))
    for port in cluster.ports:
        redis.Redis(port=port).flushall()
    yield conn
    conn.close()


def test_worker_through_nodes_that_do_not_own_the_slot(
    cluster: RedisCluster3, owner: redis.Redis, redis_url: str
) -> None:
    stranger = cluster.non_owner_port(NS + "queues")
    others = ",".join(f"127.0.0.1:{p}" for p in cluster.ports if p != stranger)
    with FaultRun("cluster", cluster.seed_url(stranger), lambda: owner, redis_url,
                  "--concurrency", "2", namespace=NS) as plain:
        ids = [f"k{i}" for i in range(600)]
        plain.push(ids, sleep_ms=lambda i: i % 3)
        plain.start()
        # The same through a redis+cluster:// URL naming the non-owners first.
        plain.worker_url = f"redis+cluster://127.0.0.1:{stranger},{others}/0"
        plain.start()
        plain.verify(ids)


def test_client_on_a_redis_cluster_object(cluster: RedisCluster3, owner: redis.Redis) -> None:
    client = Client(cluster.client(), namespace=NS)
    try:
        client.enqueue_to("mail", "Mailer", "hi", 1)
        client.enqueue_to("mail", "Mailer", "there", 2)
        assert client.size("mail") == 2
        assert client.info()["pending"] == 2
        assert owner.llen(NS + "queue:mail") == 2  # byte-identical Resque layout on the owner
        assert client.peek("mail", 0, 1)
    finally:
        client.close()


def test_plain_url_to_any_node_follows_moved(cluster: RedisCluster3, owner: redis.Redis) -> None:
    for port in cluster.ports:
        client = Client(connect(cluster.seed_url(port)), namespace=NS)
        client.enqueue_to("q", "Job", port)
        client.redis.close()
    assert owner.llen(NS + "queue:q") == 3
    many = connect("redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports))
    assert describe(many).startswith("cluster ")
    assert Client(many, namespace=NS).size("q") == 3


def test_admin_cli_through_a_node_that_does_not_own_the_slot(
    cluster: RedisCluster3, owner: redis.Redis
) -> None:
    Client(owner, namespace=NS).enqueue_to("reports", "Report", 1)
    stranger = cluster.seed_url(cluster.non_owner_port(NS + "queues"))
    result = invoke(stranger, "--namespace", NS, "queues")
    assert result.exit_code == 0, result.stderr
    assert "reports" in result.stdout and "MOVED" not in result.stdout + result.stderr


def test_dashboard_through_a_node_that_does_not_own_the_slot(
    cluster: RedisCluster3, owner: redis.Redis
) -> None:
    Client(owner, namespace=NS).enqueue_to("invoices", "Invoice", 7)
    stranger = connect(cluster.seed_url(cluster.non_owner_port(NS + "queues")))
    web = WsgiClient(make_app(Client(stranger, namespace=NS)))
    status, _headers, body = web.get("/queues")
    assert status.startswith("200"), body
    assert "invoices" in body and "MOVED" not in body


def test_a_namespace_without_hash_tag_is_refused_with_one_line(
    cluster: RedisCluster3,
) -> None:
    url = cluster.seed_url(cluster.ports[0])
    done = run_command("--app", "reliability_jobs", "--queues", "q", "--redis", url,
                       env=worker_env(url))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "hash tag" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
