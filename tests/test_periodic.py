"""Periodic (cron) jobs: cron strings, the schedule store, firing exactly once, missed firings.

Time-dependent behaviour runs on an injected clock (``FakeClock``) against a real redis-server;
the worker test at the end checks the wiring with two real worker processes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Callable

import click
import pytest
import redis
from conftest import free_port
from periodic_helpers import KEYS, FakeClock, Records, enqueuer, queued, seen_at
from redis.backoff import NoBackoff
from redis.retry import Retry
from worker_helpers import NS, WorkerProc, wait_until

from pyresqueworker import Client
from pyresqueworker.cli.work import work
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol import wire
from pyresqueworker.protocol.queues import QueueSpec
from pyresqueworker.worker._process import WorkerProcess
from pyresqueworker.worker.config import WorkerConfig
from pyresqueworker.worker.periodic import PeriodicEnqueuer, Schedule, ScheduleStore, validate_cron

Spawn = Callable[..., WorkerProc]

T0 = 1705287600.0  # 2024-01-15 03:00:00 UTC, a Monday
RUNTIME = NS + "pyresque:schedules"
LAST = NS + "pyresque:schedules:last-enqueued-at"


@pytest.fixture
def log() -> Iterator[Records]:
    with Records.attached() as handler:
        yield handler


@pytest.fixture
def store(r: redis.Redis) -> ScheduleStore:
    return ScheduleStore(r, KEYS)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc)


# -- cron strings ------------------------------------------------------------------------------


def test_next_run_of_a_five_field_cron_is_in_utc() -> None:
    daily = Schedule("nightly", "0 3 * * *", "Cleanup", [], "low")
    assert daily.next_run(utc(2024, 1, 15, 3, 0)) == utc(2024, 1, 16, 3, 0)  # strictly after
    assert daily.next_run(datetime(2024, 1, 15, 2, 59)) == utc(2024, 1, 15, 3, 0)  # naive = UTC
    weekdays = Schedule("w", "*/15 9-17 * * mon-fri", "C", [], "q")
    assert weekdays.next_run(utc(2024, 1, 19, 17, 50)) == utc(2024, 1, 22, 9, 0)  # Fri -> Mon
    assert Schedule("h", "@hourly", "C", [], "q").next_run(utc(2024, 1, 1, 0, 1)) == utc(
        2024, 1, 1, 1, 0)


def test_a_cron_may_end_with_a_time_zone_as_in_resque_scheduler() -> None:
    berlin = Schedule("b", "0 3 * * * Europe/Berlin", "C", [], "q")
    assert berlin.next_run(utc(2024, 1, 15, 0, 0)) == utc(2024, 1, 15, 2, 0)  # CET = UTC+1
    assert berlin.next_run(utc(2024, 7, 15, 0, 0)) == utc(2024, 7, 15, 1, 0)  # CEST = UTC+2


@pytest.mark.parametrize("cron, reason", [
    ("", "five fields"),
    ("* * * *", "five fields"),
    ("0 0 3 * * *", "five fields"),  # croniter's seconds field is not standard cron
    ("61 * * * *", "not a valid cron"),
    ("0 3 * * funday", "not a valid cron"),
    ("0 3 31 2 *", "never fires"),
    ("0 3 * * * Mars/Olympus_Mons", "unknown time zone"),
    ("@reboot", "five fields"),
    (42, "must be a string"),
])
def test_a_bad_cron_is_a_value_error_with_the_reason(cron: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_cron(cron)
    with pytest.raises(ValueError, match=reason):
        Schedule("s", cron, "C", [], "q")


# -- the store ---------------------------------------------------------------------------------


def test_a_runtime_schedule_is_stored_in_resque_schedulers_config_shape_under_our_key(
    r: redis.Redis, store: ScheduleStore
) -> None:
    added = store.add("report-5m", "*/5 * * * *", "Report", [1, "é"], queue="reports",
                      description="five-minute report")
    assert added == Schedule("report-5m", "*/5 * * * *", "Report", [1, "é"], "reports",
                             "five-minute report", True, "redis", None)
    assert r.hget(RUNTIME, "report-5m") == (
        '{"cron":"*/5 * * * *","class":"Report","queue":"reports","args":[1,"é"],'
        '"description":"five-minute report","enabled":true}').encode()
    # Not where a Ruby resque-scheduler would load it and fire it a second time.
    assert not r.exists(NS + "persistent_schedules", NS + "schedules", NS + "schedules_changed")


def test_list_and_get_return_the_stored_schedules_by_name(store: ScheduleStore) -> None:
    store.add("zeta", "0 3 * * *", "Cleanup", queue="low")
    store.add("alpha", "*/5 * * * *", "Report", ("x",), queue="reports", enabled=False)
    assert [(s.name, s.class_name, s.args, s.enabled, s.source) for s in store.list()] == [
        ("alpha", "Report", ["x"], False, "redis"), ("zeta", "Cleanup", [], True, "redis")]
    got = store.get("zeta")
    assert got is not None and got.cron == "0 3 * * *" and got.queue == "low"
    assert store.get("missing") is None


def test_add_refuses_a_taken_name_unless_replace(r: redis.Redis, store: ScheduleStore) -> None:
    store.add("job", "0 3 * * *", "A", queue="q")
    with pytest.raises(ValueError, match="exists"):
        store.add("job", "0 4 * * *", "B", queue="q")
    assert store.get("job") is not None and store.get("job").class_name == "A"  # type: ignore[union-attr]
    store.add("job", "0 4 * * *", "B", queue="q", replace=True)
    assert json.loads(r.hget(RUNTIME, "job") or b"")["class"] == "B"


@pytest.mark.parametrize("name, cron, class_name, args, queue", [
    ("", "* * * * *", "C", [], "q"),
    ("bad\nname", "* * * * *", "C", [], "q"),
    ("x" * 201, "* * * * *", "C", [], "q"),
    ("n", "nope", "C", [], "q"),
    ("n", "* * * * *", "", [], "q"),
    ("n", "* * * * *", "C", [], ""),
    ("n", "* * * * *", "C", "not-a-list", "q"),
    ("n", "* * * * *", "C", [object()], "q"),
    ("n", "* * * * *", "C", [float("nan")], "q"),
])
def test_add_rejects_bad_input_and_stores_nothing(
    r: redis.Redis, store: ScheduleStore, name: str, cron: str, class_name: str, args: Any,
    queue: str,
) -> None:
    with pytest.raises(ValueError):
        store.add(name, cron, class_name, args, queue=queue)
    assert not r.exists(RUNTIME)


def test_enable_and_disable_a_runtime_schedule(r: redis.Redis, store: ScheduleStore) -> None:
    store.add("job", "0 3 * * *", "A", queue="q")
    assert store.disable("job") is True
    assert json.loads(r.hget(RUNTIME, "job") or b"")["enabled"] is False
    assert store.get("job").enabled is False  # type: ignore[union-attr]
    assert store.enable("job") is True
    assert store.get("job").enabled is True  # type: ignore[union-attr]
    assert store.enable("missing") is False and store.disable("missing") is False


def test_delete_removes_a_runtime_schedule_and_its_last_firing(
    r: redis.Redis, store: ScheduleStore
) -> None:
    store.add("job", "* * * * *", "A", queue="q")
    seen_at(r, T0 - 1)
    enqueuer(r, FakeClock(T0 + 1)).tick()
    assert r.hexists(LAST, "job")
    assert store.delete("job") is True
    assert store.get("job") is None and not r.hexists(LAST, "job")
    assert store.delete("job") is False


def test_client_schedules_is_a_store_on_the_clients_namespace(r: redis.Redis) -> None:
    client = Client(r, namespace="other")
    client.schedules.add("job", "0 3 * * *", "A", queue="q")
    assert r.hexists("other:pyresque:schedules", "job") and not r.exists(RUNTIME)
    assert [s.name for s in client.schedules.list()] == ["job"]


# -- code-declared schedules -------------------------------------------------------------------


def code_registry() -> Registry:
    registry = Registry()

    @registry.job("Cleanup", queue="low", cron="0 3 * * *")
    def cleanup() -> None: ...

    registry.periodic("*/5 * * * *", "Report", [1], queue="reports", name="report-5m")
    return registry


def test_code_declared_schedules_are_published_and_listed_as_code(
    r: redis.Redis, store: ScheduleStore
) -> None:
    store.add("runtime", "0 4 * * *", "A", queue="q")
    enqueuer(r, FakeClock(T0 - 600), code_registry()).tick()
    listed = {s.name: s for s in store.list()}
    assert sorted(listed) == ["Cleanup", "report-5m", "runtime"]
    assert listed["Cleanup"] == Schedule("Cleanup", "0 3 * * *", "Cleanup", [], "low",
                                         source="code")
    assert (listed["report-5m"].class_name, listed["report-5m"].args) == ("Report", [1])
    assert listed["runtime"].source == "redis"


def test_code_schedules_are_disabled_by_name_but_not_deleted_or_shadowed(
    r: redis.Redis, store: ScheduleStore
) -> None:
    enqueuer(r, FakeClock(T0 - 600), code_registry()).tick()
    assert store.disable("Cleanup") is True
    assert store.get("Cleanup").enabled is False  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="declared in code"):
        store.delete("Cleanup")
    with pytest.raises(ValueError, match="declared in code"):
        store.add("Cleanup", "* * * * *", "Other", queue="q")
    assert store.enable("Cleanup") is True
    assert store.get("Cleanup").enabled is True  # type: ignore[union-attr]


def test_a_published_schedule_no_worker_republished_for_an_hour_is_dropped(
    r: redis.Redis, store: ScheduleStore
) -> None:
    now = int(r.time()[0])
    r.hset(NS + "pyresque:schedules:code", "Gone", json.dumps(
        {"cron": "0 3 * * *", "class": "Gone", "queue": "q", "args": [], "description": "",
         "seen_at": now - 3601}))
    assert store.list() == [] and store.disable("Gone") is False
    enqueuer(r, FakeClock(T0), code_registry()).tick()
    assert not r.hexists(NS + "pyresque:schedules:code", "Gone")


def test_a_cron_job_without_a_queue_is_a_registration_error(r: redis.Redis) -> None:
    registry = Registry()

    @registry.job("NoQueue", cron="* * * * *")
    def no_queue() -> None: ...

    with pytest.raises(ValueError, match=r"NoQueue.*no queue"):
        enqueuer(r, FakeClock(T0), registry)


def test_bad_code_declarations_are_value_errors(r: redis.Redis) -> None:
    registry = Registry()

    @registry.job("BadCron", queue="q", cron="every day")
    def bad_cron() -> None: ...

    with pytest.raises(ValueError, match=r"BadCron.*five fields"):
        registry.periodic_schedules()
    other = Registry()
    with pytest.raises(ValueError, match="five fields"):
        other.periodic("* * *", "X", queue="q")
    other.periodic("* * * * *", "X", queue="q")
    with pytest.raises(ValueError, match="already declared"):
        other.periodic("0 * * * *", "X", queue="q")

    @other.job("X", queue="q", cron="0 3 * * *")
    def x() -> None: ...

    with pytest.raises(ValueError, match="declared twice"):
        other.periodic_schedules()


def test_the_worker_process_builds_its_enqueuer_unless_periodic_is_off(redis_url: str) -> None:
    bad = Registry()

    @bad.job("BadCron", queue="q", cron="61 * * * *")
    def bad_cron() -> None: ...

    config = WorkerConfig(queues=QueueSpec.parse("q"), redis_url=redis_url)
    with pytest.raises(ValueError, match="BadCron"):
        WorkerProcess(config, bad)
    off = WorkerConfig(queues=QueueSpec.parse("q"), redis_url=redis_url, periodic=False)
    process = WorkerProcess(off, bad)
    assert process.periodic is None
    process.conn.close()
    good = WorkerProcess(WorkerConfig(queues=QueueSpec.parse("q"), redis_url=redis_url,
                                      periodic_grace=30), code_registry())
    assert good.periodic is not None and good.periodic.grace == 30
    assert good.periodic.lock_value == good.worker_ids[0]
    good.conn.close()


def test_the_command_line_turns_periodic_off_and_sets_the_grace() -> None:
    defaults = work.make_context("pyresque-work", ["--queues", "q"]).params
    assert defaults["periodic"] is True and defaults["periodic_grace"] == 60.0
    params = work.make_context(
        "pyresque-work", ["--queues", "q", "--no-periodic", "--periodic-grace", "30"]).params
    assert params["periodic"] is False and params["periodic_grace"] == 30.0
    with pytest.raises(click.BadParameter) as bad:
        work.make_context("pyresque-work", ["--queues", "q", "--periodic-grace", "0"])
    assert "--periodic-grace" in bad.value.format_message()


# -- firing ------------------------------------------------------------------------------------


def test_each_firing_is_enqueued_exactly_once_however_many_enqueuers_race(
    r: redis.Redis, redis_url: str, store: ScheduleStore
) -> None:
    args = [1, {"name": "é", "ratio": 1e20}]
    store.add("report", "*/5 * * * *", "Report", args, queue="reports")
    seen_at(r, T0 - 1)  # the fleet has known it since 02:59:59
    clock = FakeClock(T0 + 1)
    racers = [enqueuer(redis.Redis.from_url(redis_url), clock, lock_value=f"racer-{i}")
              for i in range(5)]
    barrier = threading.Barrier(len(racers))
    fired: list[int] = []

    def race(racer: PeriodicEnqueuer) -> None:
        barrier.wait()
        fired.append(racer.tick())

    for now in (T0 + 1, T0 + 2, T0 + 301):  # the 03:00 firing, nothing new, the 03:05 one
        clock.now = now
        threads = [threading.Thread(target=race, args=(racer,)) for racer in racers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(fired) == 2
    # Exactly the bytes Resque.enqueue_to writes (Client.enqueue_to's are tested against Ruby).
    item = wire.encode_job("Report", args).encode()
    assert item == b'{"class":"Report","args":[1,{"name":"\xc3\xa9","ratio":1.0e+20}]}'
    assert queued(r, "reports") == [item, item]
    assert r.smembers(NS + "queues") == {b"reports"}
    assert (r.get(NS + f"pyresque:schedules:fired:report:{int(T0)}") or b"").startswith(b"racer-")
    assert 0 < int(r.ttl(NS + f"pyresque:schedules:fired:report:{int(T0)}")) <= 660
    # The last firing, as resque-scheduler's delayed:last_enqueued_at records it.
    assert r.hget(LAST, "report") == wire.started_at(T0 + 300).encode()
    assert store.get("report").last_enqueued_at == wire.started_at(T0 + 300)  # type: ignore[union-attr]


def test_a_code_declared_schedule_fires_with_no_args_to_its_queue(r: redis.Redis) -> None:
    clock = FakeClock(T0 - 0.5)
    fire = enqueuer(r, clock, code_registry())
    assert fire.tick() == 0
    clock.now = T0 + 0.5
    assert fire.tick() == 2  # 03:00 is a firing of both "0 3 * * *" and "*/5 * * * *"
    assert queued(r, "low") == [b'{"class":"Cleanup","args":[]}']
    assert queued(r, "reports") == [b'{"class":"Report","args":[1]}']


def test_a_time_zone_cron_fires_at_that_zones_time(r: redis.Redis, store: ScheduleStore) -> None:
    store.add("berlin", "0 3 * * * Europe/Berlin", "Nightly", queue="q")
    clock = FakeClock(T0 - 3600 - 5)  # 01:59:55 UTC = 02:59:55 in Berlin
    fire = enqueuer(r, clock)
    assert fire.tick() == 0
    clock.now = T0 - 3600  # 03:00 in Berlin
    assert fire.tick() == 1


def test_disabled_schedules_do_not_fire_until_enabled(r: redis.Redis, store: ScheduleStore) -> None:
    store.add("runtime", "* * * * *", "Minutely", queue="q", enabled=False)
    clock = FakeClock(T0 - 600)
    fire = enqueuer(r, clock, code_registry())
    fire.tick()
    store.disable("Cleanup")
    clock.now = T0 + 1
    assert fire.tick() == 1  # only report-5m
    assert queued(r, "q") == [] and queued(r, "low") == []
    store.enable("runtime")
    store.enable("Cleanup")
    clock.now = T0 + 61
    assert fire.tick() == 1
    assert queued(r, "q") == [b'{"class":"Minutely","args":[]}']


def test_a_starting_enqueuer_fires_only_firings_within_the_grace_period(
    r: redis.Redis, store: ScheduleStore, log: Records
) -> None:
    store.add("daily", "0 3 * * *", "Daily", queue="q")
    store.add("minutely", "* * * * *", "Minutely", queue="m")
    r.hset(LAST, "daily", wire.started_at(T0 - 2 * 86400))  # it last ran two days ago
    r.hset(LAST, "minutely", wire.started_at(T0))  # and this one at 03:00
    assert enqueuer(r, FakeClock(T0 + 90)).tick() == 1
    # 03:00 is 90 s old (> the 60 s grace): skipped, with one line naming what was missed;
    # 03:01 is 30 s old: fired.
    assert queued(r, "q") == [] and len(queued(r, "m")) == 1
    warnings = log.messages(logging.WARNING)
    assert warnings == [
        "periodic schedule 'daily': skipped 2 missed firing(s) (older than the 60 s grace period)"]


def test_a_restart_within_the_grace_period_still_fires_the_firing_it_missed(
    r: redis.Redis, store: ScheduleStore
) -> None:
    store.add("daily", "0 3 * * *", "Daily", queue="q")
    assert enqueuer(r, FakeClock(T0 - 5)).tick() == 0  # the old process, then it stops
    assert enqueuer(r, FakeClock(T0 + 20)).tick() == 1  # the new one, 20 s late
    assert enqueuer(r, FakeClock(T0 + 40)).tick() == 0  # and yet another: already enqueued


def test_firings_missed_during_a_stall_are_skipped_with_one_log_line(
    r: redis.Redis, store: ScheduleStore, log: Records
) -> None:
    store.add("minutely", "* * * * *", "Minutely", queue="m")
    seen_at(r, T0 - 1)
    clock = FakeClock(T0 + 1)
    fire = enqueuer(r, clock)
    assert fire.tick() == 1  # 03:00
    clock.now = T0 + 3600 + 1  # an hour later (a suspended VM, a long Redis outage)
    assert fire.tick() == 1  # only 04:00; 03:01 .. 03:59 are older than the grace period
    assert r.hget(LAST, "minutely") == wire.started_at(T0 + 3600).encode()
    assert log.messages(logging.WARNING) == [
        "periodic schedule 'minutely': skipped 59 missed firing(s) (older than the 60 s grace "
        "period)"]


def test_a_tick_fires_at_most_max_catch_up_firings_of_a_schedule(
    r: redis.Redis, store: ScheduleStore, log: Records
) -> None:
    store.add("minutely", "* * * * *", "Minutely", queue="m")
    r.hset(LAST, "minutely", wire.started_at(T0))  # it ran at 03:00
    fire = enqueuer(r, FakeClock(T0 + 3600 + 1), grace=3600.0, max_catch_up=10)
    assert fire.tick() == 10  # of the 60 firings within the grace period, the last 10
    assert r.hget(LAST, "minutely") == wire.started_at(T0 + 3600).encode()
    assert r.exists(NS + f"pyresque:schedules:fired:minutely:{int(T0 + 3060)}")
    assert not r.exists(NS + f"pyresque:schedules:fired:minutely:{int(T0 + 3000)}")
    assert log.messages(logging.WARNING) == [
        "periodic schedule 'minutely': skipped 50 missed firing(s) (over the catch-up limit of 10)"]


def test_runtime_changes_are_picked_up_at_the_next_tick(
    r: redis.Redis, store: ScheduleStore
) -> None:
    clock = FakeClock(T0 + 1)
    fire = enqueuer(r, clock)
    assert fire.tick() == 0
    store.add("minutely", "* * * * *", "Minutely", queue="m")  # added while running
    clock.now = T0 + 61
    assert fire.tick() == 1
    store.add("minutely", "0 4 * * *", "Minutely", queue="m", replace=True)  # re-timed
    clock.now = T0 + 121
    assert fire.tick() == 0
    clock.now = T0 + 181
    assert fire.tick() == 0
    store.add("minutely", "*/2 * * * *", "Other", queue="m", replace=True)
    clock.now = T0 + 241
    assert fire.tick() == 1
    store.delete("minutely")
    clock.now = T0 + 361
    assert fire.tick() == 0
    assert queued(r, "m") == [b'{"class":"Minutely","args":[]}', b'{"class":"Other","args":[]}']


def test_unreadable_stored_schedules_are_logged_once_and_the_others_still_fire(
    r: redis.Redis, store: ScheduleStore, log: Records
) -> None:
    r.hset(RUNTIME, mapping={
        "broken": "{not json",
        "every": '{"every":"1m","class":"X","queue":"q"}',
        "badcron": '{"cron":"nope","class":"X","queue":"q"}',
        "noqueue": '{"cron":"* * * * *","class":"X"}',
        "array": "[1,2]",
    })
    store.add("good", "* * * * *", "Good", queue="g")
    # resque-scheduler's shapes are read as Ruby reads them: class from the name, Hash args.
    r.hset(RUNTIME, "Hashy", '{"cron":"* * * * *","queue":"g","args":{"a":1}}')
    clock = FakeClock(T0 - 1)
    fire = enqueuer(r, clock)
    assert fire.tick() == 0
    clock.now = T0 + 1
    assert fire.tick() == 2
    assert sorted(queued(r, "g")) == [b'{"class":"Good","args":[]}',
                                      b'{"class":"Hashy","args":[{"a":1}]}']
    errors = log.messages(logging.ERROR)
    assert len(errors) == 5 and all("cannot read periodic schedule" in e for e in errors)
    clock.now = T0 + 61
    assert fire.tick() == 2
    assert len(log.messages(logging.ERROR)) == 5  # not again every second
    assert sorted(s.name for s in store.list()) == ["Hashy", "good"]
    assert store.delete("broken") is True


def test_a_redis_outage_is_raised_for_the_caller_to_back_off() -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))  # fail at once, not after redis-py's retries
    with pytest.raises(redis.ConnectionError):
        PeriodicEnqueuer(down, KEYS, clock=FakeClock(T0)).tick()


def test_a_firing_cut_off_by_a_redis_error_is_retried_at_the_next_tick(
    r: redis.Redis, store: ScheduleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add("minutely", "* * * * *", "Minutely", queue="m")
    seen_at(r, T0 - 1)
    clock = FakeClock(T0 + 1)
    fire = enqueuer(r, clock)
    real_fire = fire._fire
    monkeypatch.setattr(fire, "_fire", lambda *a: (_ for _ in ()).throw(
        redis.ConnectionError("gone")))
    with pytest.raises(redis.ConnectionError):
        fire.tick()
    monkeypatch.setattr(fire, "_fire", real_fire)
    clock.now = T0 + 5  # Redis is back; the housekeeping thread ticks again
    assert fire.tick() == 1
    clock.now = T0 + 6
    assert fire.tick() == 0
    assert queued(r, "m") == [b'{"class":"Minutely","args":[]}']


def test_other_errors_never_escape_a_tick(r: redis.Redis, log: Records) -> None:
    r.set(RUNTIME, "not a hash")  # WRONGTYPE from HGETALL
    assert enqueuer(r, FakeClock(T0)).tick() == 0
    assert any("WRONGTYPE" in m for m in log.messages(logging.ERROR))


def test_a_runtime_schedule_named_like_a_code_one_is_ignored_where_the_code_declares_it(
    r: redis.Redis, log: Records
) -> None:
    r.hset(RUNTIME, "Cleanup", '{"cron":"* * * * *","class":"Imposter","queue":"low"}')
    seen_at(r, T0 - 1, code_registry())
    fire = enqueuer(r, FakeClock(T0 + 1), code_registry())
    assert fire.tick() == 2
    assert queued(r, "low") == [b'{"class":"Cleanup","args":[]}']
    assert any("ignored" in m for m in log.messages(logging.WARNING))


# -- a real worker -----------------------------------------------------------------------------

_FIRING_LINE = re.compile(r"(enqueued periodic job|already enqueued).*firing=(\S+)")


def firings(worker: WorkerProc) -> dict[str, str]:
    """firing time -> "enqueued" / "already" as this worker's log tells it."""
    return {m.group(2): "enqueued" if m.group(1).startswith("enqueued") else "already"
            for m in _FIRING_LINE.finditer(worker.log())}


def test_two_workers_started_together_enqueue_each_firing_once(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    # With the default 60 s grace, the last minute boundary is always within the grace
    # period, so each worker's first tick tries to fire it: exactly one of them does. It is
    # the schedule's own firing only if the fleet knew the schedule then: say it did.
    r.hset(NS + "pyresque:schedules:first-seen", "PeriodicTick",
           json.dumps({"cron": "* * * * *", "at": int(time.time()) - 60}))
    args = ("--queues", "other", "--app", "periodic_jobs", "--log-level", "debug")
    workers = [spawn_worker(*args), spawn_worker(*args)]

    def both_tried_one_firing() -> list[str]:
        first, second = (firings(w) for w in workers)
        return [f for f in first if f in second]

    common = wait_until(both_tried_one_firing, "both workers to try the same firing", 20)
    outcomes = [firings(w)[common[0]] for w in workers]
    assert sorted(outcomes) == ["already", "enqueued"]
    locks = r.keys(NS + "pyresque:schedules:fired:PeriodicTick:*")
    jobs = queued(r, "periodic-e2e")
    assert len(jobs) == len(locks) >= 1
    assert set(jobs) == {b'{"class":"PeriodicTick","args":[]}'}
    listed = ScheduleStore(r, KEYS).get("PeriodicTick")
    assert listed is not None and listed.source == "code" and listed.queue == "periodic-e2e"
    for worker in workers:
        assert worker.stop() == 0


def test_periodic_takes_the_issues_positional_form_and_the_registered_queue() -> None:
    registry = Registry()
    positional = registry.periodic("*/5 * * * *", "Class", ["a"], "reports")
    assert (positional.queue, positional.args) == ("reports", ["a"])

    @registry.job("Cleanup", queue="low")
    def cleanup() -> None: ...

    assert registry.periodic("0 3 * * *", "Cleanup", name="nightly").queue == "low"
    with pytest.raises(ValueError, match="no queue"):
        registry.periodic("0 3 * * *", "Unregistered")


def test_code_schedules_of_this_process_are_listed_and_switched_without_a_worker(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyresqueworker.jobs import registry

    fresh = registry.Registry()
    monkeypatch.setattr(registry.default_registry, "_handlers", fresh._handlers)
    monkeypatch.setattr(registry.default_registry, "_periodic", fresh._periodic)

    @registry.job("Cleanup", queue="maintenance", cron="0 3 * * *")
    def cleanup() -> None: ...

    store = Client(r).schedules
    listed = {s.name: s for s in store.list()}
    assert listed["Cleanup"].source == "code" and listed["Cleanup"].enabled
    assert store.disable("Cleanup") is True
    assert store.get("Cleanup") is not None and not store.get("Cleanup").enabled  # type: ignore[union-attr]
    assert store.enable("Cleanup") is True
    assert store.disable("NoSuchSchedule") is False
