"""The soak's Redis servers: two groups under fault and the ledger, all on loopback.

* Group ``a``: one redis-server with an append-only file fsynced on every write, behind the TCP
  fault proxy of the fault tests; its workers connect through the proxy (cuts, black holes,
  latency), and the soak also fills its memory (``maxmemory`` + ``noeviction``) and restarts it
  (``kill -9``, then a start on the same port and directory, which loads the file).
* Group ``b``: a master, a replica and three Sentinels (the fault tests' ``SentinelGroup``); its
  workers connect with the ``redis+sentinel://`` URL and ride ``SENTINEL FAILOVER``.
* The ledger: a plain redis-server nobody faults (see :mod:`soakkit.ledger`).

The servers, the proxy and the Sentinel group are the fault tests' own (``tests/fault_*.py``,
put on ``sys.path`` by ``scripts/soak.py``): one copy of the fault tooling.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import Optional

import redis
from fault_proxy import FaultProxy
from fault_sentinel import MASTER_NAME, SentinelGroup
from fault_servers import HOST, RedisNode, client_for
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

__all__ = ["GROUPS", "DurableRedis", "Servers"]

GROUPS = ("a", "b")


def _fast_dir() -> Optional[str]:
    """tmpfs when there is one: the append-only file is fsynced on every write, and what the
    soak's restart tests is a crashed *process* (the page cache survives it), not a crashed
    host; on tmpfs those fsyncs cost nothing and the soak never waits on a shared disk."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class DurableRedis:
    """Group ``a``'s Redis: AOF with ``appendfsync always``, behind a :class:`FaultProxy`.

    Every write Redis acknowledged is in the file before the reply leaves, so a restart loses
    nothing a worker or the enqueuer was told had happened: "0 lost" holds across it.
    """

    def __init__(self) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="pyresque-soak-aof-", dir=_fast_dir())
        self.node: Optional[RedisNode] = None
        self.proxy: Optional[FaultProxy] = None
        try:
            # A later --dir wins over RedisNode's own (which keeps the log).
            self.node = RedisNode(["--dir", self.data_dir, "--appendonly", "yes",
                                   "--appendfsync", "always", "--maxmemory-policy",
                                   "noeviction"])
            self.proxy = FaultProxy(self.node.port)
        except BaseException:
            self.close()
            raise

    @property
    def port(self) -> int:
        assert self.node is not None
        return self.node.port

    def worker_url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url()

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A direct (not proxied), bytes, non-retrying client: a retried RPUSH would enqueue
        twice, and a soak must see every error."""
        return client_for(self.port, decode_responses=False, socket_timeout=timeout)

    def restart(self, outage: float) -> None:
        """``kill -9`` Redis, stay down ``outage`` seconds, start it again (same port and
        files); returns once it answers, the file loaded."""
        assert self.node is not None
        self.node.kill()
        time.sleep(outage)
        self.node.start(timeout=30.0)

    def out_of_memory(self, on: bool) -> None:
        """``maxmemory`` 1 byte (every write refused with OOM, reads served) or unlimited."""
        with self.client() as conn:
            conn.config_set("maxmemory", "1" if on else "0")

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        if self.node is not None:
            self.node.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Servers:
    """Every server of one soak; :meth:`close` stops them all (also after a failed start)."""

    def __init__(self) -> None:
        self.ledger: Optional[RedisNode] = None
        self.a: Optional[DurableRedis] = None
        self.b: Optional[SentinelGroup] = None
        try:
            self.ledger = RedisNode()
            self.a = DurableRedis()
            self.b = SentinelGroup()
        except BaseException:
            self.close()
            raise

    @property
    def ledger_url(self) -> str:
        assert self.ledger is not None
        return self.ledger.url

    def ledger_client(self) -> redis.Redis:
        assert self.ledger is not None
        return client_for(self.ledger.port, decode_responses=False, socket_timeout=30.0)

    def worker_url(self, group: str) -> str:
        assert self.a is not None and self.b is not None
        return self.a.worker_url() if group == "a" else self.b.url

    def b_master_port(self) -> int:
        """The port group ``b``'s Sentinels name as master now."""
        assert self.b is not None
        return self.b.master_port()

    def data(self, group: str) -> redis.Redis:
        """A direct bytes client on the Redis that holds ``group``'s queues now (in ``b``,
        whichever node is master at this moment)."""
        assert self.a is not None and self.b is not None
        if group == "a":
            return self.a.client()
        return client_for(self.b.master_port(), decode_responses=False)

    def enqueue_client(self, group: str) -> redis.Redis:
        """The enqueuer's connection: direct to ``a``; to ``b``'s master through Sentinel, on
        one connection (so that ``WAIT`` counts the replicas of this connection's writes)."""
        assert self.a is not None and self.b is not None
        if group == "a":
            return self.a.client()
        sentinel = Sentinel([(HOST, port) for port in self.b.sentinel_ports],
                            socket_timeout=2.0)
        pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            MASTER_NAME, sentinel, socket_timeout=5.0, retry=Retry(NoBackoff(), 0))
        return redis.Redis(connection_pool=pool, single_connection_client=True)

    def close(self) -> None:
        for server in (self.b, self.a, self.ledger):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
