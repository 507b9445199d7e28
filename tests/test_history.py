"""Job history (``--history``): written with each completion, read by id, class and time."""

from __future__ import annotations

import pytest
import redis
from worker_helpers import wait_failures, wait_ran, wait_until

from pyresqueworker import Client
from pyresqueworker.fetch import NO_FINISH, Claimed, Claimer, Finish
from pyresqueworker.history import History, HistorySettings, history_write, parse_duration
from pyresqueworker.job import Job
from pyresqueworker.wire import Keys

KEYS = Keys()
RUN_AT = "2026/11/23 10:00:00 UTC"


def test_durations_parse_and_bad_ones_are_refused() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90m") == 5400
    assert parse_duration("3600") == 3600
    for bad in ("", "7y", "-1d", "0", "d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def _finish_one(r: redis.Redis, claimer: Claimer, raw: bytes, now: float,
                settings: HistorySettings, outcome: str = "success") -> None:
    r.rpush("resque:queue:jobs", raw)
    claimed = claimer.claim(["jobs"], NO_FINISH, RUN_AT)
    assert isinstance(claimed, Claimed)
    job = Job(queue="jobs", raw=claimed.raw, worker_id=claimer.worker_id)
    import json

    job.payload = json.loads(claimed.raw)
    write = history_write(KEYS, settings, job, outcome, 1.5, None, now=now)
    claimer.claim([], Finish("1", history=write), "")


def test_retention_and_size_cap_drop_the_oldest_records(r: redis.Redis) -> None:
    claimer = Claimer(r, KEYS, "h:1:jobs")
    settings = HistorySettings(retention=100, max_records=3)
    for i in range(5):
        _finish_one(r, claimer, b'{"class":"A","args":[%d]}' % i, 1000.0 + i, settings)
    history = History(r, KEYS)
    assert [rec.args for rec in history.recent()] == [[4], [3], [2]]  # the cap of 3
    _finish_one(r, claimer, b'{"class":"B","args":[9]}', 1103.5, settings)
    # Retention 100 s at t=1103.5 drops everything before 1003.5.
    assert [rec.args for rec in history.recent()] == [[9], [4]]
    # A class's own index is trimmed when that class finishes again (and expires with the
    # retention after its last record).
    _finish_one(r, claimer, b'{"class":"A","args":[5]}', 1104.0, settings)
    assert [rec.args for rec in history.recent(class_name="A")] == [[5], [4]]
    assert history.classes() == ["A", "B"]
    assert 0 < r.ttl(KEYS.history_class("A")) <= 100


def test_a_worker_records_each_outcome_with_ids_and_classes(
    r: redis.Redis, spawn_worker: object
) -> None:
    client = Client(r)
    r.rpush("resque:queue:jobs", b'{"class":"WithId","args":[1],"id":"order-42"}')
    client.enqueue_to("jobs", "Boom", "bad")
    job_id = client.enqueue_active_job("ExportJob", 5, queue="jobs")
    client.enqueue_to("jobs", "Flaky", "h1", 2)
    spawn_worker("--app", "feature_jobs", "--queues", "jobs",  # type: ignore[operator]
                 "--history", "1d", "--history-max", "1000")
    wait_failures(r, 2)  # Boom, and ExportJob (no Python handler)
    wait_ran(r, 3)  # WithId, Flaky twice
    history = History(r, KEYS)
    wait_until(lambda: history.count() == 5, "five records")
    by_class = {rec.class_name: rec for rec in history.recent()}
    assert by_class["WithId"].job_id == "order-42" and by_class["WithId"].outcome == "success"
    assert by_class["Boom"].outcome == "failure"
    assert by_class["Boom"].error == "worker_jobs.JobError: bad"
    assert by_class["ExportJob"].job_id == job_id
    assert [rec.outcome for rec in history.recent(class_name="Flaky")] == ["success", "retried"]
    [record] = history.by_id("order-42")
    assert record.args == [1] and record.queue == "jobs" and record.worker.endswith(":jobs")
    assert record.to_dict()["class"] == "WithId"
