"""Scrape-time gauges read from Redis: queue depth and latency, heartbeats, failed list, workers.

Read by the serving process only, when Prometheus scrapes: two pipelined round trips, whatever
the number of queues. Queue and worker gauges describe the whole Redis (every host), so several
exporters on one Redis report the same values: aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable, Optional

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..client.inspection import is_pause_value, read_queue_names
from ..log import logger
from ..protocol import wire
from ._queue_head import HEAD_LIMIT, enqueued_at, read_heads

__all__ = ["HEAD_LIMIT", "RedisCollector", "enqueued_at"]

def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisCollector:
    """A prometheus_client collector of what only Redis knows.

    ``hostname``: heartbeat ages are reported for the workers of this host only (``None``:
    every worker). ``clock`` gives "now" in epoch seconds; by default Redis ``TIME``, the clock
    heartbeats are written with.
    """

    def __init__(self, conn: redis.Redis, keys: wire.Keys, hostname: Optional[str] = None, *,
                 clock: Optional[Callable[[], float]] = None, head_limit: int = HEAD_LIMIT) -> None:
        self.conn = conn
        self.keys = keys
        self.hostname = hostname
        self.clock = clock
        self.head_limit = head_limit
        self._failing = False

    def describe(self) -> list[Metric]:
        """The metric names, without touching Redis (registration calls this)."""
        return list(self._families().values())

    def _families(self) -> dict[str, GaugeMetricFamily]:
        return {
            "up": GaugeMetricFamily(
                "pyresque_redis_up", "1 if the last scrape could read Redis, else 0."),
            "depth": GaugeMetricFamily(
                "pyresque_queue_depth", "Jobs waiting in each queue.", labels=["queue"]),
            "latency": GaugeMetricFamily(
                "pyresque_queue_latency_seconds",
                "Age of the oldest waiting job, from its enqueued_at (ActiveJob or a top-level "
                "field); 0 for an empty queue; no sample when that job carries no time.",
                labels=["queue"]),
            "heartbeat": GaugeMetricFamily(
                "pyresque_worker_heartbeat_age_seconds",
                "Seconds since each worker of this host last wrote its heartbeat.",
                labels=["worker"]),
            "failed": GaugeMetricFamily(
                "pyresque_failed_jobs", "Entries in the failed list (resque:failed)."),
            "workers": GaugeMetricFamily(
                "pyresque_workers", "Registered Resque workers, all hosts, Ruby and Python."),
            "paused": GaugeMetricFamily(
                "pyresque_paused", "1 while pause-all-workers is on (no worker takes jobs)."),
            "paused_workers": GaugeMetricFamily(
                "pyresque_paused_workers", "Python workers paused with USR2."),
        }

    def collect(self) -> Iterator[Metric]:
        """Read Redis now. Never raises: an unreadable Redis gives ``pyresque_redis_up 0``."""
        families = self._families()
        try:
            self._read(families)
        except Exception as exc:  # a scrape must answer, whatever Redis or its data holds
            if not self._failing:
                logger.warning("metrics: cannot read Redis", extra={"error": str(exc)})
            self._failing = True
            families["up"].add_metric([], 0)
            yield families["up"]
            return
        if self._failing:
            logger.info("metrics: redis reachable again")
        self._failing = False
        families["up"].add_metric([], 1)
        yield from families.values()

    def _read(self, families: dict[str, GaugeMetricFamily]) -> None:
        keys = self.keys
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.scard(keys.workers)
            pipe.llen(keys.failed)
            pipe.hgetall(keys.heartbeats)
            pipe.get(keys.pause_all)
            pipe.scard(keys.paused_workers)
            server_time, worker_count, failed_count, beats, pause_all, paused = pipe.execute()
        now = self.clock() if self.clock is not None else (
            server_time[0] + server_time[1] / 1e6)
        queues = read_queue_names(self.conn, keys)  # the queues set and hand-pushed lists
        for queue, depth, age in read_heads(self.conn, keys, queues, now, self.head_limit):
            families["depth"].add_metric([queue], depth)
            if depth == 0:
                families["latency"].add_metric([queue], 0.0)
            elif age is not None:
                families["latency"].add_metric([queue], age)
        for raw_id, value in beats.items():
            worker_id = _text(raw_id)
            if self.hostname is not None and worker_id.split(":", 1)[0] != self.hostname:
                continue
            beat = wire.parse_time(value)
            if beat is not None:
                families["heartbeat"].add_metric([worker_id], max(0.0, now - beat))
        families["failed"].add_metric([], int(failed_count))
        families["workers"].add_metric([], int(worker_count))
        families["paused"].add_metric([], 1 if is_pause_value(pause_all) else 0)
        families["paused_workers"].add_metric([], int(paused))

