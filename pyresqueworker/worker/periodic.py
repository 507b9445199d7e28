"""Periodic (cron) jobs: schedules declared in code or managed at runtime, fired exactly once.

Two sources of schedules:

* **code**: ``@job("Cleanup", queue="low", cron="0 3 * * *")`` and
  ``registry.periodic("*/5 * * * *", "Report", [1], queue="reports")``. Each worker process
  fires the ones its own registry declares, and publishes them to Redis so that
  :meth:`ScheduleStore.list` can show them.
* **runtime** ("redis"): :class:`ScheduleStore` adds, enables, disables and deletes named
  schedules in a Redis hash; every worker re-reads it once its change counter moves (looked at
  every few seconds, by :mod:`._active_schedules`), so a change is live without a restart.

Each worker process runs one :class:`PeriodicEnqueuer` and calls :meth:`~PeriodicEnqueuer.tick`
about once a second. A firing is a (schedule, cron time) pair; the first process to reach it
takes a per-firing lock and enqueues the job in one Lua script, so however many processes tick,
each firing is enqueued exactly once, and a crash can neither lose nor double it.

Missed firings: each tick fires the firings in ``(now - grace, now]`` that were not fired yet
(``grace`` defaults to 60 s, at most :data:`MAX_CATCH_UP` per schedule, the most recent ones).
Firings older than that are skipped, with one log line, like resque-scheduler, which never
runs a cron firing it missed. So a worker restarted at 03:00:20 still enqueues the 03:00 run,
and workers started after an outage do not replay the night. Only firings after the fleet
first saw the schedule count (see :mod:`._first_seen`): one first deployed at 03:00:30 waits
for its next firing instead of running the 03:00 one.

Cron times are in UTC unless the cron string ends with a time-zone name, as in rufus-scheduler
(resque-scheduler's cron engine): ``"0 3 * * * Europe/Berlin"``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Callable, Optional

import redis

from ..jobs.schedules import (
    Schedule,
    ScheduleKeys,
    ScheduleStore,
    as_text,
    decode_hash,
    validate_cron,
    walker,
)
from ..protocol import wire
from ..protocol._resp import LuaScript
from ..protocol.redis_errors import REDIS_ERRORS
from ._active_schedules import ActiveSchedules
from ._first_seen import FirstSeen

if TYPE_CHECKING:
    from ..jobs.registry import Registry

__all__ = [
    "DEFAULT_GRACE",
    "MAX_CATCH_UP",
    "PeriodicEnqueuer",
    "Schedule",
    "ScheduleStore",
    "validate_cron",
]

_log = logging.getLogger("pyresqueworker.periodic")

#: Seconds a firing may be late and still be enqueued (``--periodic-grace``).
DEFAULT_GRACE = 60.0
#: Most firings of one schedule one tick enqueues (the most recent ones).
MAX_CATCH_UP = 10
# A firing's lock outlives its grace window by this much, so clocks of worker hosts that
# disagree by up to ten minutes still cannot fire it twice.
_LOCK_MARGIN = 600
# A safety stop for walking the firings of a very frequent cron across a very long window.
_MAX_WALK = 100_000

# The lock and Resque's push (SADD queues + RPUSH queue:<q>, the bytes Resque.enqueue_to
# writes) and the last-firing record in one script: a crash between taking the lock and
# pushing would otherwise lose the firing, and pushing before locking would double it.
_FIRE = LuaScript(
    "if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end "
    "redis.call('SADD', KEYS[2], ARGV[3]) "
    "redis.call('RPUSH', KEYS[3], ARGV[4]) "
    "redis.call('HSET', KEYS[4], ARGV[5], ARGV[6]) "
    "return 1"
)


# -- firing ------------------------------------------------------------------------------------


class PeriodicEnqueuer:
    """Fires due schedules: the registry's code-declared ones and the runtime ones in Redis.

    Call :meth:`tick` about once a second. ``clock`` gives epoch seconds (tests inject one).
    Building it raises ``ValueError`` for a bad code declaration (a cron handler without a
    queue, a bad cron string, two schedules with one name).
    """

    def __init__(self, redis: redis.Redis, keys: wire.Keys, registry: Optional[Registry] = None,
                 *, clock: Callable[[], float] = time.time, grace: float = DEFAULT_GRACE,
                 max_catch_up: int = MAX_CATCH_UP, lock_value: Optional[str] = None) -> None:
        if not grace > 0:
            raise ValueError(f"grace must be a positive number of seconds, got {grace!r}")
        if max_catch_up < 1:
            raise ValueError("max_catch_up must be at least 1")
        self.redis = redis
        self.keys = keys
        self._k = ScheduleKeys(keys)
        self.clock = clock
        self.grace = float(grace)
        self.max_catch_up = max_catch_up
        self.lock_value = lock_value or f"{socket.gethostname()}:{os.getpid()}"
        self._schedules = ActiveSchedules(
            redis, self._k, registry.periodic_schedules() if registry is not None else [],
            registry.queue_for if registry is not None else None)
        self._horizon: Optional[float] = None  # firings up to here are handled
        self._next_due: dict[tuple[str, str], tuple[Schedule, float]] = {}
        self._first_seen = FirstSeen(redis, self._k.first_seen)

    def tick(self) -> int:
        """Enqueue every due firing; returns how many this call enqueued.

        Never raises, except Redis connection errors (the caller backs off on those).
        """
        try:
            return self._tick()
        except REDIS_ERRORS:
            raise
        except Exception as exc:
            _log.error("periodic tick failed: %s: %s", type(exc).__name__, exc)
            return 0

    def _tick(self) -> int:
        now = self.clock()
        window_start = now - self.grace
        horizon = self._horizon
        # At start, after a stall longer than grace, or if the clock went back: look back
        # over the grace window (the locks make firings already enqueued a no-op).
        gap = horizon is None or not window_start <= horizon <= now
        since = window_start if gap or horizon is None else horizon
        active = self._schedules.at(now)
        last = ({k: as_text(v) for k, v in decode_hash(self.redis.hgetall(self._k.last)).items()}
                if gap else {})
        if gap:
            self._next_due.clear()
        fired = 0
        if len(self._next_due) > len(active):  # forget deleted and disabled schedules
            keep = {(s.source, s.name) for s in active}
            self._next_due = {k: v for k, v in self._next_due.items() if k in keep}
        # A schedule with no record (or one for another cron) is first seen now, except one
        # that appeared or changed while this process ticked on time: it is seen since the
        # last tick, which lacked it and is where a running worker always fired it from.
        self._first_seen.update(active, now if gap else since, last)
        for schedule in active:
            try:
                fired += self._fire_due(schedule, since, now, last.get(schedule.name) if gap
                                        else None, horizon if gap else None)
            except REDIS_ERRORS:
                raise
            except Exception as exc:  # one schedule's trouble must not stop the others
                _log.error("periodic schedule %r failed: %s: %s", schedule.name,
                           type(exc).__name__, exc)
        self._horizon = now
        return fired

    def _fire_due(self, schedule: Schedule, since: float, now: float,
                  last_text: Optional[str], horizon: Optional[float]) -> int:
        key = (schedule.source, schedule.name)
        cached = self._next_due.get(key)
        if cached is not None and cached[0] == schedule and cached[1] > now:
            return 0  # the common case: nothing due, no cron arithmetic
        seen = self._first_seen.since(schedule)
        since = max(since, seen)  # firings from before the schedule existed are not missed
        firings = walker(schedule.cron, since)
        due: deque[float] = deque(maxlen=self.max_catch_up)
        count = 0
        when = firings.get_next(float)
        while when <= now and count < _MAX_WALK:
            due.append(when)
            count += 1
            when = firings.get_next(float)
        next_due = when
        over_limit = count - len(due)
        # Firings before the window that nobody fired: count from the last known firing, but
        # not from before the schedule's first sight (those were never its own).
        too_old = 0
        known = [t for t in (horizon, wire.parse_time(last_text)) if t is not None]
        counted_from = max(*known, seen) if known else since
        if counted_from < since:
            older = walker(schedule.cron, counted_from)
            when = older.get_next(float)
            while when <= since and too_old < _MAX_WALK:
                too_old += 1
                when = older.get_next(float)
        if too_old or over_limit:
            reasons = ([f"older than the {self.grace:g} s grace period"] if too_old else []) + (
                [f"over the catch-up limit of {self.max_catch_up}"] if over_limit else [])
            _log.warning("periodic schedule %r: skipped %d missed firing(s) (%s)",
                         schedule.name, too_old + over_limit, " or ".join(reasons),
                         extra={"schedule": schedule.name, "skipped": too_old + over_limit})
        fired = 0
        for when in due:
            fired += self._fire(schedule, when)
        # Only now: if Redis failed above, the next tick tries these firings again.
        self._next_due[key] = (schedule, next_due)
        return fired

    def _fire(self, schedule: Schedule, when: float) -> int:
        """Enqueue one firing unless another process did; 1 if this call enqueued it."""
        payload = wire.encode_job(schedule.class_name, schedule.args)
        keys = [self._k.fired(schedule.name, when), self.keys.queues,
                self.keys.queue(schedule.queue), self._k.last]
        args = [self.lock_value, int(self.grace) + _LOCK_MARGIN, schedule.queue, payload,
                schedule.name, wire.started_at(when)]
        firing = wire.iso_utc(when)
        extra = {"schedule": schedule.name, "class": schedule.class_name,
                 "queue": schedule.queue, "firing": firing}
        if int(_FIRE(self.redis, keys, args)) == 1:
            _log.info("enqueued periodic job", extra=extra)
            return 1
        _log.debug("periodic firing already enqueued by another worker", extra=extra)
        return 0
