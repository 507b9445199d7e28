"""A worker process's housekeeping thread: heartbeats, prunes, titles, watchdog, memory.

One thread per process, ticking every quarter second: it interrupts jobs past their timeout,
keeps the process title current, expands ``--queues`` globs against ``resque:queues`` (at most
once a second), writes buffered job history; once a second it fires cron
schedules, checks memory and offers to take the minute's time-series sample (one process of
the fleet does); it writes the heartbeat of every slot in one pipeline (Redis ``TIME``),
re-registers slots a Ruby prune removed, and prunes dead workers. It never dies while the
worker lives: Redis outages back off, other errors are logged.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional, Protocol

import redis

from .._version import __version__
from ..client.history import HistoryBuffer
from ..log import logger
from ..protocol import wire
from ..protocol._outage import Outage, OutageBook, is_redis_away, server_info
from ..protocol._probe import is_link_down
from ..protocol.queues import QueueOrder
from ._prune import Pruner
from ._slot_view import SlotView
from .config import WorkerConfig
from .metrics import Metrics
from .periodic import PeriodicEnqueuer
from .timeseries import SeriesStore, SeriesWriter

__all__ = ["Housekeeper", "HousekeeperHost", "resident_memory_mb", "set_proctitle"]

_WATCHDOG_TICK = 0.25  # seconds between checks for overdue jobs


def resident_memory_mb() -> Optional[float]:
    """This process's resident set size, from /proc (Linux) or getrusage's peak elsewhere."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)




def set_proctitle(text: str) -> None:
    try:
        import setproctitle

        title = os.environ.get("RESQUE_PROCLINE_PREFIX", "") + text
        # The title carries a payload's class name, which may hold a NUL: setproctitle would
        # raise on it, outside the job's try, and kill the slot.
        setproctitle.setproctitle(title.replace("\0", "\\0"))
    except ImportError:  # optional at runtime; Ruby's same-host prune then sees no title
        pass


class HousekeeperHost(Protocol):
    """What the housekeeping thread reads and calls of its worker process."""

    config: WorkerConfig
    keys: wire.Keys
    conn: redis.Redis
    worker_ids: list[str]
    slots: list[SlotView]
    stopping: threading.Event  # no new claims
    paused: threading.Event  # USR2
    metrics: Metrics
    outages: OutageBook
    queues: QueueOrder
    history: Optional[HistoryBuffer]
    periodic: Optional[PeriodicEnqueuer]
    pruner: Pruner

    def register(self, worker_ids: list[str]) -> None:
        """Write the worker ids to Redis again (after Redis lost them)."""

    def recycle(self, reason: str) -> None:
        """Stop claiming and exit to be replaced."""


class Housekeeper:
    """The housekeeping of one :class:`~pyresqueworker.worker._process.WorkerProcess`."""

    def __init__(self, process: HousekeeperHost) -> None:
        self.process = process
        self._title = ""
        self._server = ""  # run_id of the Redis server the slots were registered with
        self._published_pause = False
        self.series: Optional[SeriesWriter] = (
            SeriesWriter(SeriesStore(process.conn, process.keys), process.worker_ids[0])
            if process.config.time_series else None)

    def heartbeat(self, first: bool = False) -> None:
        """Every slot's heartbeat in one pipeline, from Redis ``TIME`` (Ruby's format)."""
        p = self.process
        if first:
            self._server = self.server_id()
        beat = wire.heartbeat_value(int(p.conn.time()[0]))
        with p.conn.pipeline(transaction=False) as pipe:
            if first:
                pipe.hdel(p.keys.heartbeats, *p.worker_ids)
            pipe.hset(p.keys.heartbeats, mapping=dict.fromkeys(p.worker_ids, beat))
            pipe.execute()

    def reregister_missing(self) -> None:
        """Register again the slots another worker's prune removed (Ruby compares pids), or
        all of them when Redis itself lost them (restarted empty, a failover to a replica
        that had not caught up): the server's ``run_id`` tells the two apart."""
        p = self.process
        present = p.conn.smismember(p.keys.workers, p.worker_ids)
        missing = [wid for wid, here in zip(p.worker_ids, present) if not here]
        if not missing or p.stopping.is_set():
            return
        server = self.server_id()
        if server != self._server:
            logger.warning("redis is not the server this worker registered with (restarted "
                           "or failed over); registering again", extra={"workers": len(missing)})
            self._server = server
        else:
            logger.warning("re-registering slots removed by another worker's prune",
                           extra={"workers": ",".join(missing)})
        p.register(missing)

    def server_id(self) -> str:
        """The ``run_id`` of the Redis server the process talks to now."""
        return str(server_info(self.process.conn, "server").get("run_id", ""))

    def prune(self) -> None:
        """Prune dead workers; anything but a Redis outage is logged, never raised."""
        p = self.process
        try:
            outcomes = list(p.pruner.prune().values())
            for how in ("requeued", "failed"):
                p.metrics.recovered(outcomes.count(how), how)
        except Exception as exc:
            if is_redis_away(exc):
                raise  # a prune must never take the worker down
            logger.error("prune failed", extra={"error": repr(exc)})

    def run(self) -> None:
        """The thread's loop, until the process stops; no error ends it."""
        p = self.process
        interval = p.config.heartbeat_interval
        next_beat = time.monotonic() + interval
        next_prune = time.monotonic() + interval
        outage = Outage("housekeeping", book=p.outages, cap=min(interval, 1.0),
                        on_recovered=p.metrics.reconnected)
        next_second = time.monotonic()
        # Set when the link went down: Redis work then waits for the process's prober (a
        # heartbeat sent into a black hole would hold this loop past the heal for its timeout);
        # the watchdog and the title go on.
        probe_since: Optional[float] = None
        while not p.stopping.wait(min(_WATCHDOG_TICK, interval)):
            try:
                now = time.monotonic()
                for slot in p.slots:
                    slot.interrupt_if_overdue(now)
                self.update_title()
                if probe_since is not None and not self._heard_since(probe_since):
                    continue
                probe_since = None
                self.publish_pause()
                if p.queues.stale:  # --queues with globs: what they match now
                    p.queues.refresh(p.conn.smembers(p.keys.queues))
                if p.history is not None:
                    p.history.write(p.conn)
                if now >= next_second:
                    next_second = now + 1.0
                    self.check_memory()
                    if p.periodic is not None:  # cron firings, once a second per process
                        p.periodic.tick()
                    if self.series is not None:  # one SET NX a minute; one process samples
                        self.series.tick()
                if now >= next_beat:
                    self.heartbeat()
                    self.reregister_missing()
                    next_beat = now + interval
                if now >= next_prune:
                    self.prune()
                    next_prune = now + interval
                outage.succeeded()
            except Exception as exc:
                # Heartbeat again as soon as Redis answers: after a failover the new master
                # must see this worker alive before anyone prunes it.
                next_beat = time.monotonic() + outage.failed(exc)
                if is_link_down(exc) and p.outages.prober is not None:
                    probe_since = time.monotonic()

    def _heard_since(self, since: float) -> bool:
        """Whether the process's prober heard Redis after ``since`` (asking it to go on)."""
        prober = self.process.outages.prober
        if prober is None:
            return True
        prober.want()
        return prober.answered_since(since)

    def publish_pause(self) -> None:
        """Tell the CLI, dashboard and metrics that this process is paused (USR2), or not."""
        p = self.process
        paused = p.paused.is_set()
        if paused == self._published_pause:
            return
        if paused:
            p.conn.sadd(p.keys.paused_workers, *p.worker_ids)
        else:
            p.conn.srem(p.keys.paused_workers, *p.worker_ids)
        self._published_pause = paused

    def check_memory(self) -> None:
        """``--max-memory``: recycle the process once its resident memory passes the limit."""
        limit = self.process.config.max_memory_mb
        if limit is None:
            return
        rss_mb = resident_memory_mb()
        if rss_mb is not None and rss_mb > limit:
            self.process.recycle(
                f"resident memory {rss_mb:.0f} MB is over --max-memory {limit:g} MB")

    def update_title(self) -> None:
        """Resque's procline, kept by the housekeeping thread (not per job: a title is a
        syscall, and a lag of a quarter second is invisible to ``ps`` readers)."""
        p = self.process
        queues = ",".join(p.config.queues.id_queues)
        busy = [s for s in p.slots if s.job is not None]
        paused = p.paused.is_set() or all(s.status == "paused" for s in p.slots)
        if len(p.slots) == 1 and busy:
            slot = busy[0]
            job = slot.job
            text = (f"Processing {job.queue} since {int(slot.job_started)} "
                    f"[{job.class_name or '?'}]") if job else f"Waiting for {queues}"
        elif busy:
            text = f"Processing {len(busy)} of {len(p.slots)} slots [{queues}]"
        elif paused:
            text = "Paused"
        else:
            text = f"Waiting for {queues}"
        if text != self._title:
            self._title = text
            set_proctitle(f"resque-{__version__}: {text}")
