"""Periodic schedules fire only for times after the fleet first saw them (issue 24).

A schedule first deployed at 09:22:30 must not enqueue its 09:22:00 firing, while a firing
missed because every worker was down after the schedule had been seen still runs once. The
first sight is ``<ns>pyresque:schedules:first-seen`` (name -> ``{"cron":..., "at":epoch}``).
Time runs on an injected clock against a real redis-server, as in tests/test_periodic.py.
"""

from __future__ import annotations

import json
import logging

import redis
from periodic_helpers import FakeClock, Records, enqueuer, queued
from worker_helpers import NS

from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol import wire
from pyresqueworker.worker.periodic import ScheduleStore

NINE_22 = 1796635320.0  # 2026-12-07 09:22:00 UTC, the firing
THREE = 1796612400.0  # 2026-12-07 03:00:00 UTC
DAY = 86400
FIRST_SEEN = NS + "pyresque:schedules:first-seen"
LAST = NS + "pyresque:schedules:last-enqueued-at"


def declaring(cron: str, name: str = "Tick") -> Registry:
    """A worker app whose code declares ``name`` on ``cron`` (queue ``q``)."""
    registry = Registry()
    registry.periodic(cron, name, queue="q")
    return registry


def first_seen(r: redis.Redis, name: str) -> dict[str, object]:
    raw = r.hget(FIRST_SEEN, name)
    assert raw is not None, f"no first-seen record for {name!r}"
    record: dict[str, object] = json.loads(raw)
    return record


def test_a_minutely_schedule_first_deployed_mid_minute_skips_that_minutes_firing(
    r: redis.Redis,
) -> None:
    clock = FakeClock(NINE_22 + 30)  # first deployed at 09:22:30, on a fresh Redis
    worker = enqueuer(r, clock, declaring("* * * * *"))
    with Records.attached() as log:
        assert worker.tick() == 0  # not the 09:22:00 firing: the schedule did not exist then
        assert first_seen(r, "Tick") == {"cron": "* * * * *", "at": int(NINE_22 + 30)}
        # A second worker of the same deploy, started later, agrees: the first sight wins.
        assert enqueuer(r, FakeClock(NINE_22 + 45), declaring("* * * * *")).tick() == 0
        assert first_seen(r, "Tick")["at"] == int(NINE_22 + 30)
        clock.now = NINE_22 + 31
        assert worker.tick() == 0
        assert queued(r, "q") == []
        clock.now = NINE_22 + 60  # 09:23:00: the schedule's first firing
        assert worker.tick() == 1
        clock.now = NINE_22 + 120
        assert worker.tick() == 1
    assert queued(r, "q") == [b'{"class":"Tick","args":[]}'] * 2
    assert r.hget(LAST, "Tick") == wire.started_at(NINE_22 + 120).encode()
    assert log.messages(logging.WARNING) == []  # nothing was missed: no "skipped" line


def test_a_daily_schedule_first_deployed_just_after_its_time_waits_for_the_next_day(
    r: redis.Redis,
) -> None:
    clock = FakeClock(THREE + 30)  # 03:00:30
    worker = enqueuer(r, clock, declaring("0 3 * * *", "Cleanup"))
    with Records.attached() as log:
        assert worker.tick() == 0
        for later in (THREE + 31, THREE + 59, THREE + 3600):
            clock.now = later
            assert worker.tick() == 0
        assert enqueuer(r, FakeClock(THREE + 50), declaring("0 3 * * *", "Cleanup")).tick() == 0
        assert queued(r, "q") == []
        clock.now = THREE + DAY + 1  # 03:00:01 the next day
        assert worker.tick() == 1
    assert queued(r, "q") == [b'{"class":"Cleanup","args":[]}']
    assert log.messages(logging.WARNING) == []


def test_a_firing_missed_while_every_worker_was_down_still_runs_once(r: redis.Redis) -> None:
    # Today's behaviour, kept: the schedule was seen at 09:21:50, every worker stopped before
    # 09:22:00 and one came back at 09:22:20, within the grace period.
    assert enqueuer(r, FakeClock(NINE_22 - 10), declaring("* * * * *")).tick() == 0
    assert enqueuer(r, FakeClock(NINE_22 + 20), declaring("* * * * *")).tick() == 1
    assert enqueuer(r, FakeClock(NINE_22 + 25), declaring("* * * * *")).tick() == 0
    assert queued(r, "q") == [b'{"class":"Tick","args":[]}']


def test_an_upgraded_fleet_takes_the_last_firing_as_proof_it_knew_the_schedule(
    r: redis.Redis,
) -> None:
    # Workers from before first-seen records fired the schedule yesterday; the upgraded ones
    # start at 03:00:30, after every worker was down across 03:00: that firing still runs.
    r.hset(LAST, "Cleanup", wire.started_at(THREE - DAY))
    worker = enqueuer(r, FakeClock(THREE + 30), declaring("0 3 * * *", "Cleanup"))
    assert worker.tick() == 1
    assert queued(r, "q") == [b'{"class":"Cleanup","args":[]}']
    assert first_seen(r, "Cleanup") == {"cron": "0 3 * * *", "at": int(THREE - DAY)}


def test_a_runtime_schedule_added_while_no_worker_ran_fires_only_after_a_worker_saw_it(
    r: redis.Redis,
) -> None:
    ScheduleStore(r, wire.Keys(NS)).add("every-minute", "* * * * *", "Tick", queue="q")
    clock = FakeClock(NINE_22 + 30)  # the first worker starts at 09:22:30
    worker = enqueuer(r, clock)
    assert worker.tick() == 0
    clock.now = NINE_22 + 60
    assert worker.tick() == 1
    assert queued(r, "q") == [b'{"class":"Tick","args":[]}']


def test_a_changed_cron_is_a_new_schedule(r: redis.Redis) -> None:
    # "0 3 * * *", known for a day and fired at 03:00, is redeployed as "0 4 * * *" at 04:00:30.
    assert enqueuer(r, FakeClock(THREE - DAY - 10), declaring("0 3 * * *", "Report")).tick() == 0
    assert enqueuer(r, FakeClock(THREE + 1), declaring("0 3 * * *", "Report")).tick() == 1
    assert enqueuer(r, FakeClock(THREE + 3630), declaring("0 4 * * *", "Report")).tick() == 0
    assert first_seen(r, "Report") == {"cron": "0 4 * * *", "at": int(THREE + 3630)}
    # The next worker of the new deploy keeps that record.
    assert enqueuer(r, FakeClock(THREE + 3640), declaring("0 4 * * *", "Report")).tick() == 0
    assert first_seen(r, "Report")["at"] == int(THREE + 3630)
    assert enqueuer(r, FakeClock(THREE + DAY + 3601), declaring("0 4 * * *", "Report")).tick() == 1
    assert len(queued(r, "q")) == 2


def test_deleting_a_runtime_schedule_forgets_when_it_was_first_seen(r: redis.Redis) -> None:
    store = ScheduleStore(r, wire.Keys(NS))
    store.add("every-minute", "* * * * *", "Tick", queue="q")
    assert enqueuer(r, FakeClock(NINE_22 - 10)).tick() == 0
    assert r.hexists(FIRST_SEEN, "every-minute")
    assert store.delete("every-minute") is True
    assert not r.hexists(FIRST_SEEN, "every-minute")
    # Added again: a new schedule, whose earlier firings are not its own.
    store.add("every-minute", "* * * * *", "Tick", queue="q")
    assert enqueuer(r, FakeClock(NINE_22 + 30)).tick() == 0
    assert first_seen(r, "every-minute")["at"] == int(NINE_22 + 30)
