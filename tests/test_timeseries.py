"""The dashboard's time series: one sample a minute for the whole fleet, kept bounded in Redis,
and turned into jobs per minute or per day by the reader."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from worker_helpers import wait_until

from pyresqueworker import Client
from pyresqueworker.protocol import wire
from pyresqueworker.worker._queue_head import HEAD_LIMIT
from pyresqueworker.worker.timeseries import (
    DAY,
    KEEP_DAYS,
    KEEP_MINUTES,
    MAX_QUEUES,
    MINUTE,
    Sample,
    SeriesStore,
    SeriesWriter,
    bucket_counts,
)

NS = "resque:"
T0 = 1_700_006_400.0  # a UTC midnight (2023-11-15 00:00:00)
MINUTES = NS + "pyresque:series:minutes"
DAYS = NS + "pyresque:series:days"


@pytest.fixture
def store(r: redis.Redis) -> SeriesStore:
    return SeriesStore(r, wire.Keys())


def stored(r: redis.Redis, key: str) -> list[tuple[dict[str, Any], float]]:
    return [(json.loads(member), score)
            for member, score in r.zrange(key, 0, -1, withscores=True)]


def test_one_process_of_the_fleet_samples_each_minute(r: redis.Redis,
                                                      store: SeriesStore) -> None:
    now = [T0 + 5]
    writers = [SeriesWriter(SeriesStore(r, wire.Keys()), f"host:{n}:q", lambda: now[0])
               for n in range(3)]
    assert [w.tick() for w in writers] == [True, False, False]
    assert [w.tick() for w in writers] == [False, False, False]  # no second try this minute
    assert r.get(NS + f"pyresque:series:claim:{int(T0)}") == b"host:0:q"
    assert 0 < r.ttl(NS + f"pyresque:series:claim:{int(T0)}") <= 180
    now[0] += 60
    assert sorted(w.tick() for w in writers) == [False, False, True]
    assert [score for _, score in stored(r, MINUTES)] == [T0, T0 + 60]


def test_a_sample_holds_the_counters_and_each_queue_depth_and_latency(
        r: redis.Redis, store: SeriesStore) -> None:
    client = Client(r)
    r.set(NS + "stat:processed", 120)
    r.set(NS + "stat:failed", 7)
    r.rpush(NS + "queue:mail", json.dumps({  # as Rails' Resque adapter writes it
        "class": "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper", "wrapper": "HelloJob",
        "queue": "mail", "args": [{"job_class": "HelloJob", "job_id": "j1", "arguments": [],
                                   "enqueued_at": "2023-11-14T23:59:17.500000000Z"}]}))
    client.enqueue_to("mail", "Plain", 1)
    client.enqueue_to("plain", "Plain", 2)  # no enqueued_at: the latency is unknown
    r.rpush(NS + "queue:big", json.dumps({"class": "Big", "args": ["x" * HEAD_LIMIT],
                                          "enqueued_at": T0 - 1}))
    r.sadd(NS + "queues", "big", "empty", "broken")
    r.set(NS + "queue:broken", "not a list")  # WRONGTYPE: left out, the rest still read
    assert SeriesWriter(store, "w", lambda: T0 + 1).tick()
    [(sample, score)] = stored(r, MINUTES)
    assert score == T0
    assert sample == {"t": T0 + 1, "p": 120, "f": 7, "q": {
        "mail": [2, 43.5], "plain": [1, None], "big": [1, None], "empty": [0, None]}}
    assert Sample.from_json(r.zrange(MINUTES, 0, 0)[0]) == Sample(
        T0 + 1, 120, 7, {"mail": (2, 43.5), "plain": (1, None), "big": (1, None),
                         "empty": (0, None)})


def test_only_the_deepest_queues_are_recorded(r: redis.Redis, store: SeriesStore) -> None:
    for n in range(MAX_QUEUES + 5):
        r.rpush(NS + f"queue:q{n:02}", *[json.dumps({"class": "Job", "args": [k]})
                                         for k in range(n + 1)])
        r.sadd(NS + "queues", f"q{n:02}")
    sample = store.take_sample(T0)
    assert len(sample.queues) == MAX_QUEUES
    deepest = {f"q{n:02}": (n + 1, None) for n in range(5, MAX_QUEUES + 5)}
    assert sample.queues == deepest


def test_minutes_keep_a_day_and_days_keep_eight_weeks_of_first_samples(
        r: redis.Redis, store: SeriesStore) -> None:
    for n in range(3):  # three samples on one day: only the first is the day's
        store.write(Sample(T0 + 60 * n, n, 0))
    assert [s["p"] for s, _ in stored(r, DAYS)] == [0]
    store.write(Sample(T0 + KEEP_MINUTES * MINUTE + 120, 10, 1))
    assert [s["p"] for s, _ in stored(r, MINUTES)] == [2, 10]  # older than a day: gone
    for day in range(1, KEEP_DAYS + 3):
        store.write(Sample(T0 + day * DAY + 30, 100 + day, 0))
    days = stored(r, DAYS)
    assert len(days) == KEEP_DAYS + 1
    assert days[0][1] == T0 + 2 * DAY and days[-1][1] == T0 + (KEEP_DAYS + 2) * DAY
    assert r.zcard(MINUTES) <= KEEP_MINUTES + 1


def test_reading_skips_what_does_not_parse(r: redis.Redis, store: SeriesStore) -> None:
    store.write(Sample(T0, 1, 0, {"mail": (3, None)}))
    r.zadd(MINUTES, {"not json": T0 + 60, '{"t":1}': T0 + 60})
    store.write(Sample(T0 + 120, 5, 1))
    assert [s.processed for s in store.minutes(T0)] == [1, 5]
    assert [s.processed for s in store.minutes(T0 + 61)] == [5]
    r.set(NS + "stat:processed", 9)
    assert store.live(T0 + 130) == Sample(T0 + 130, 9, 0)


def test_jobs_between_samples_land_in_the_minute_they_were_counted() -> None:
    samples = [Sample(T0 + 0.2, 100, 10), Sample(T0 + 60.3, 130, 11),
               Sample(T0 + 240.1, 190, 14),  # two minutes without a sample: spread
               Sample(T0 + 300.5, 5, 0),  # stat:processed was reset: unknown
               Sample(T0 + 360.2, 25, 2), Sample(T0 + 379, 40, 2)]  # live, same minute
    buckets = bucket_counts(samples, MINUTE, int(T0), int(T0) + 420)
    assert [(b.processed, b.failed) for b in buckets] == [
        (30, 1), (20, 1), (20, 1), (20, 1), (None, None), (20, 2), (15, 0), (None, None)]
    assert [b.start for b in buckets] == [int(T0) + 60 * n for n in range(8)]


def test_days_count_from_each_days_first_sample() -> None:
    days = [Sample(T0 + 9 * 3600, 1000, 0), Sample(T0 + DAY + 5, 1600, 4),
            Sample(T0 + DAY + 7200, 1700, 4)]  # the live counters, later today
    buckets = bucket_counts(days, DAY, int(T0) - DAY, int(T0) + DAY)
    assert [(b.processed, b.failed) for b in buckets] == [(None, None), (600, 4), (100, 0)]


def test_a_worker_samples_when_it_starts(r: redis.Redis, spawn_worker: Any) -> None:
    Client(r).enqueue_active_job("HelloJob", "x", queue="idle")  # nobody works "idle"
    r.set(NS + "stat:processed", 41)
    spawn_worker("--queues", "other")
    wait_until(lambda: r.zcard(MINUTES), "the first sample")
    [(sample, _)] = stored(r, MINUTES)
    assert sample["p"] == 41 and sample["q"]["idle"][0] == 1 and sample["q"]["idle"][1] >= 0
    assert r.zcard(DAYS) == 1


def test_no_time_series_leaves_no_keys(r: redis.Redis, spawn_worker: Any) -> None:
    client = Client(r)
    worker = spawn_worker("--queues", "q", "--history", "1h", "--no-time-series")
    worker.wait_registered()
    client.enqueue_to("q", "Record", "one")
    wait_until(lambda: r.zcard(NS + "pyresque:history") >= 1, "the first history record")
    # Another record means another housekeeping pass: the first, which would sample, is over.
    client.enqueue_to("q", "Record", "two")
    wait_until(lambda: r.zcard(NS + "pyresque:history") >= 2, "the second history record")
    assert r.keys(NS + "pyresque:series:*") == []
