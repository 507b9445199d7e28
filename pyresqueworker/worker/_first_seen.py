"""When the fleet first saw each periodic schedule, so no firing from before it is enqueued.

A worker that starts looks back over the grace period for firings it missed. Without a record
of when a schedule appeared, that look-back also reaches firings from before the schedule
existed: a ``* * * * *`` first deployed at 09:22:30 would enqueue 09:22:00 at once, and a
``0 3 * * *`` first deployed at 03:00:30 would run immediately. So the first worker to see a
schedule records the time in the ``schedules:first-seen`` hash (name -> ``{"cron": ...,
"at": epoch}``), every worker takes that record, and only firings after it are the
schedule's; one missed while every worker was down after that still runs, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import redis

from ..jobs.schedules import Schedule
from ..protocol import wire
from ..protocol._resp import LuaScript

# Per schedule: keep the stored record if it is for this cron string (the first worker wins,
# as with HSETNX), otherwise write ours. A changed cron is a new schedule: firings of the new
# cron from before anyone ran it are not owed. A record missing altogether can be of a fleet
# that ran the schedule before records existed (an upgrade): then ARGV[i+3], which dates the
# first sight back to the last firing, wins over ARGV[i+2], if there is one.
_RECORD = LuaScript(
    "local out = {} "
    "for i = 1, #ARGV, 4 do "
    "  local stored = redis.call('HGET', KEYS[1], ARGV[i]) "
    "  local keep = false "
    "  if stored then "
    "    local ok, record = pcall(cjson.decode, stored) "
    "    keep = ok and type(record) == 'table' and record['cron'] == ARGV[i + 1] "
    "  end "
    "  if not keep then "
    "    local new = ARGV[i + 2] "
    "    if not stored and ARGV[i + 3] ~= '' then new = ARGV[i + 3] end "
    "    redis.call('HSET', KEYS[1], ARGV[i], new) "
    "    stored = new "
    "  end "
    "  out[#out + 1] = stored "
    "end "
    "return out"
)


def _record(cron: str, at: float) -> str:
    # Whole seconds, rounded down: with firings counted strictly after the record, a schedule
    # first seen at 09:21:59.9 still owns 09:22:00, one first seen at 09:22:00.4 does not.
    return wire.dumps({"cron": cron, "at": int(at)})


def _read_at(raw: bytes | str, fallback: float) -> float:
    try:
        at = wire.loads(raw).get("at")
    except (ValueError, AttributeError):
        return fallback
    return float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else fallback


class FirstSeen:
    """This process's copy of the first-seen records of the schedules it fires.

    Redis is asked only about a schedule this process has not seen yet, or whose cron
    changed: at start, and when a runtime schedule is added or changed.
    """

    def __init__(self, redis: redis.Redis, key: str) -> None:
        self.redis = redis
        self.key = key
        self._known: dict[str, tuple[str, float]] = {}  # name -> (cron, first seen)

    def since(self, schedule: Schedule) -> float:
        """When the fleet first saw ``schedule`` (call :meth:`update` with it first)."""
        return self._known[schedule.name][1]

    def update(self, active: list[Schedule], at: float, last: Mapping[str, str]) -> None:
        """Learn the records of ``active``; a schedule with none is first seen ``at``, or at
        its last firing in ``last`` (name -> the last-enqueued-at text) if that is earlier."""
        if len(self._known) > len(active):  # forget deleted and disabled schedules
            names = {s.name for s in active}
            self._known = {k: v for k, v in self._known.items() if k in names}
        unseen = [s for s in active if self._known.get(s.name, ("", 0.0))[0] != s.cron]
        if not unseen:
            return
        args: list[str] = []
        for schedule in unseen:
            ran: Optional[float] = wire.parse_time(last.get(schedule.name))
            args += [schedule.name, schedule.cron, _record(schedule.cron, at),
                     _record(schedule.cron, min(at, ran)) if ran is not None else ""]
        replies = _RECORD(self.redis, [self.key], args)
        for schedule, raw in zip(unseen, replies):
            self._known[schedule.name] = (schedule.cron, _read_at(raw, at))
