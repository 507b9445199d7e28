"""A resque-scheduler compatible scheduler: moves due delayed jobs to their queues (spec §15).

:class:`Scheduler` takes part in resque-scheduler's master-lock election (§15.4), so it can run
beside Ruby ``resque-scheduler`` processes and other Python schedulers: only the one holding
the lock moves jobs. Moving follows Ruby's ``handle_delayed_items`` (§15.3): oldest due
timestamp first, items in batches of 100 under ``WATCH``/``MULTI``, pushed with the bytes
``Resque.push`` writes.

The ``pyresque-scheduler`` command (:mod:`pyresqueworker.cli.scheduler`) runs one;
``pyresque-work --scheduler`` runs one in a thread of the worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Optional

import redis

from ..client._client import Client
from ..client.delayed import as_bytes
from ..protocol import wire
from ..protocol._outage import Outage
from ..protocol._resp import LuaScript
from ..protocol.connection import describe

__all__ = ["BATCH_SIZE", "LOCK_TIMEOUT", "Scheduler", "start_scheduler_thread"]

_log = logging.getLogger("pyresqueworker.scheduler")

#: resque-scheduler's ``DELAYED_REQUEUE_BATCH_SIZE`` default.
BATCH_SIZE = 100
#: resque-scheduler's master lock ``timeout`` (seconds) default.
LOCK_TIMEOUT = 180
# A timestamp whose batch keeps losing its WATCH race is left for the next run after this
# many tries, so a busy producer cannot pin the scheduler on one timestamp.
_MAX_WATCH_RETRIES = 10

# lock/resilient.rb's two scripts, with the timeout as an argument instead of spliced in.
_ACQUIRE = LuaScript(
    "if redis.call('SETNX', KEYS[1], ARGV[1]) == 1 then "
    "redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1 else return 0 end"
)
_LOCKED = LuaScript(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "redis.call('EXPIRE', KEYS[1], ARGV[2]) "
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end end return 0"
)
# Release only our own lock: a Ruby scheduler may have taken it after ours expired.
_RELEASE = LuaScript(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0"
)


def default_lock_value() -> str:
    """``<fqdn>:<pid>``, the value resque-scheduler's lock/base.rb writes."""
    return f"{socket.getfqdn()}:{os.getpid()}"


def _job_args(args: Any) -> list[Any]:
    """``enqueue_from_config``'s ``args.is_a?(Hash) ? [args] : Array(args)``."""
    if args is None:
        return []
    if isinstance(args, list):
        return args
    return [args]  # a Hash, or a scalar that Array() wraps


class Scheduler:
    """Moves due resque-scheduler delayed items to their queues while it is the master.

    ``clock`` gives epoch seconds (tests inject one). ``lock_value`` defaults to
    ``<fqdn>:<pid>``; give each scheduler in one process its own. Items with no usable queue
    fall back to ``client.queue_for(class)``, Ruby's ``queue_from_class``.
    """

    def __init__(
        self,
        client: Client,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
        *,
        batch_size: int = BATCH_SIZE,
        lock_timeout: int = LOCK_TIMEOUT,
        lock_value: Optional[str] = None,
    ) -> None:
        if not interval >= 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if lock_timeout <= interval:
            # The lock is refreshed once per pass; a shorter TTL would lapse between passes.
            raise ValueError("lock_timeout must be longer than the interval")
        self.client = client
        self.redis = client.redis
        self.keys = client.keys
        self.interval = interval
        self.clock = clock
        self.batch_size = batch_size
        self.lock_timeout = lock_timeout
        self.lock_value = lock_value or default_lock_value()
        self._was_master = False

    def __repr__(self) -> str:
        return f"Scheduler({describe(self.redis)!r}, lock_value={self.lock_value!r})"

    # -- master lock (spec §15.4) ---------------------------------------------------------

    def is_master(self) -> bool:
        """resque-scheduler's ``master?``: take the lock, or refresh it if already ours."""
        key, args = [self.keys.scheduler_master_lock], [self.lock_value, self.lock_timeout]
        if int(_ACQUIRE(self.redis, key, args)) == 1:
            return True
        return int(_LOCKED(self.redis, key, args)) == 1

    def release_lock(self) -> bool:
        """Give up the master lock if this scheduler holds it; True if it did."""
        released = _RELEASE(self.redis, [self.keys.scheduler_master_lock], [self.lock_value])
        return int(released) == 1

    # -- moving due items (spec §15.3) ----------------------------------------------------

    def run_once(self, stop: Optional[threading.Event] = None) -> int:
        """One pass: if master, move every item due by ``clock()``; returns how many moved.

        ``stop`` is checked between batches, as Ruby checks its shutdown flag.
        """
        master = self.is_master()
        if master != self._was_master:
            # Log only changes: every standby scheduler would otherwise log every pass.
            _log.info("this scheduler is %s", "the master" if master else "a standby",
                      extra={"lock": self.lock_value})
            self._was_master = master
        if not master:
            return 0
        now = int(self.clock())
        moved = 0
        retries = 0
        while stop is None or not stop.is_set():
            due = self.redis.zrangebyscore(self.keys.delayed_schedule, "-inf", now, start=0, num=1)
            if not due:
                break
            done, count = self._move_timestamp(int(as_bytes(due[0])), stop)
            moved += count
            if not done:
                retries += 1
                if retries >= _MAX_WATCH_RETRIES:
                    _log.warning("delayed items keep changing; will retry on the next pass")
                    break
        return moved

    def _move_timestamp(self, timestamp: int, stop: Optional[threading.Event]) -> tuple[bool, int]:
        """Move one timestamp's items, batch by batch: (finished, items moved)."""
        moved = 0
        while stop is None or not stop.is_set():
            count = self._move_batch(timestamp)
            if count < 0:
                return False, moved
            moved += count
            if count < self.batch_size:
                return True, moved
        return False, moved

    def _move_batch(self, timestamp: int) -> int:
        """Move up to ``batch_size`` items atomically; -1 if the list changed under us."""
        list_key = self.keys.delayed(timestamp)
        member = self.keys.delayed_member(timestamp)
        ns = self.keys.ns.encode()
        with self.redis.pipeline(transaction=True) as pipe:
            # Ruby reads with LRANGE before WATCH; watching first closes the window in which
            # items pushed in between would be trimmed without being enqueued.
            pipe.watch(list_key)  # type: ignore[no-untyped-call]
            items = [as_bytes(raw) for raw in pipe.lrange(list_key, 0, self.batch_size - 1)]
            pipe.multi()
            for raw in items:
                pipe.srem(ns + b"timestamps:" + raw, member)
                self._queue_push(pipe, raw)
            pipe.ltrim(list_key, self.batch_size, -1)
            try:
                pipe.execute()
            except redis.WatchError:
                return -1
        if len(items) < self.batch_size:
            self._clean_up(timestamp)
        for raw in items:
            _log.debug("queued delayed job", extra={"item": raw.decode("utf-8", "replace")})
        return len(items)

    def _queue_push(self, pipe: Any, raw: bytes) -> None:
        """Queue ``Resque.push`` of one item on ``pipe``, or log why it is dropped.

        Ruby's scheduler logs and drops items it cannot enqueue (no queue, no class); an item
        that is not JSON would wedge Ruby's loop, so here it is dropped the same way.
        """
        try:
            item = wire.loads(raw)
            if not isinstance(item, dict):
                raise wire.DecodeError("the item is not a JSON object")
            class_name = item.get("class")
            if not isinstance(class_name, str) or not class_name:
                raise ValueError("the item has no class")
            queue = item.get("queue") or (
                self.client.queue_for(class_name) if self.client.queue_for else None
            )
            if not isinstance(queue, str) or not queue:
                raise ValueError(f"no queue for {class_name}")
            payload = wire.encode_job(class_name, _job_args(item.get("args")))
            # Fields beyond Ruby's (a unique_key, a retry override) travel on to the job;
            # Ruby's scheduler drops them, see the README.
            extras = {k: v for k, v in item.items() if k not in ("class", "args", "queue")}
            payload = wire.with_fields(payload, extras)
        except ValueError as exc:  # DecodeError is a ValueError
            _log.error(
                "dropping delayed item: %s", exc,
                extra={"item": raw.decode("utf-8", "replace")},
            )
            return
        pipe.sadd(self.keys.queues, queue)
        pipe.rpush(self.keys.queue(queue), payload)

    def _clean_up(self, timestamp: int) -> None:
        """Ruby's ``clean_up_timestamp``: drop an empty list and its schedule entry."""
        list_key = self.keys.delayed(timestamp)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.watch(list_key)  # type: ignore[no-untyped-call]
            if int(pipe.llen(list_key)) != 0:
                pipe.unwatch()
                return
            pipe.multi()
            pipe.delete(list_key)
            pipe.zrem(self.keys.delayed_schedule, str(timestamp))
            try:
                pipe.execute()
            except redis.WatchError:
                pass  # a job was just added: the timestamp is in use again

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Call :meth:`run_once` every ``interval`` seconds until ``stop`` is set.

        No error ends the loop: Redis being away is logged once per outage and retried with
        backoff (at least every ``interval``), anything else too. The lock is released on exit.
        """
        _log.info("scheduler started", extra={"lock": self.lock_value})
        outage = Outage("scheduler", cap=max(self.interval, 1.0))
        try:
            while not stop.is_set():
                try:
                    moved = self.run_once(stop)
                    if moved:
                        _log.info("queued delayed jobs", extra={"count": moved})
                    outage.succeeded()
                except Exception as exc:
                    stop.wait(min(outage.failed(exc), self.interval))
                    continue
                stop.wait(self.interval)
        finally:
            try:
                if self.release_lock():
                    _log.info("released the scheduler master lock")
            except Exception as exc:
                _log.warning("could not release the master lock: %s", exc)
            _log.info("scheduler stopped")


def start_scheduler_thread(conn: redis.Redis, namespace: str,
                           stopping: threading.Event) -> threading.Thread:
    """``--scheduler``: a :class:`Scheduler` in a daemon thread of the worker, until
    ``stopping`` is set."""
    scheduler = Scheduler(Client(redis=conn, namespace=namespace))
    thread = threading.Thread(target=scheduler.run, args=(stopping,), name="scheduler",
                              daemon=True)
    thread.start()
    return thread
