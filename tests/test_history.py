"""Job history (``--history``): buffered by workers, written in batches, read by id, class, time."""

from __future__ import annotations

import json

import pytest
import redis
from worker_helpers import wait_failures, wait_ran, wait_until

from pyresqueworker import Client
from pyresqueworker.client.history import History, HistoryBuffer, HistorySettings, parse_duration
from pyresqueworker.protocol.job import Job
from pyresqueworker.protocol.wire import Keys

KEYS = Keys()


def test_durations_parse_and_bad_ones_are_refused() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90m") == 5400
    assert parse_duration("3600") == 3600
    for bad in ("", "7y", "-1d", "0", "d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def _job(class_name: str, args: list[int]) -> Job:
    raw = json.dumps({"class": class_name, "args": args}, separators=(",", ":")).encode()
    job = Job(queue="jobs", raw=raw, worker_id="h:1:jobs")
    job.payload = json.loads(raw)
    return job


def test_a_buffer_writes_in_one_go_and_drops_what_is_out_of_retention_or_cap(
    r: redis.Redis,
) -> None:
    clock = [1000.0]
    buffer = HistoryBuffer(KEYS, HistorySettings(retention=100, max_records=3),
                           clock=lambda: clock[0])
    for i in range(5):
        buffer.add(_job("A", [i]), "success", 1.5, None, finished_at=1000.0 + i)
    assert buffer.write(r) == 5 and len(buffer) == 0
    history = History(r, KEYS)
    assert [rec.args for rec in history.recent()] == [[4], [3], [2]]  # the cap of 3
    clock[0] = 1103.5
    buffer.add(_job("B", [9]), "success", 1.5, None, finished_at=1103.5)
    buffer.write(r)
    # Retention 100 s at t=1103.5 drops everything before 1003.5.
    assert [rec.args for rec in history.recent()] == [[9], [4]]
    # A class's own index is trimmed when that class is written again (and expires with the
    # retention after its last record).
    assert [rec.args for rec in history.recent(class_name="A")] == [[4], [3], [2]]
    buffer.add(_job("A", [5]), "success", 1.5, None, finished_at=1104.0)
    buffer.write(r)
    assert [rec.args for rec in history.recent(class_name="A")] == [[5], [4]]
    assert history.classes() == ["A", "B"]
    assert 0 < r.ttl(KEYS.history_class("A")) <= 100
    assert history.recent(1, before=1104.0)[0].args == [9]


def test_records_wait_in_the_buffer_while_redis_is_away(r: redis.Redis) -> None:
    buffer = HistoryBuffer(KEYS, HistorySettings(), clock=lambda: 1000.0)
    buffer.add(_job("A", [1]), "success", 1.5, None, finished_at=999.0)
    broken = redis.Redis(port=1, socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        buffer.write(broken)
    assert len(buffer) == 1
    assert buffer.write(r) == 1 and History(r, KEYS).count() == 1


def test_a_worker_records_each_outcome_with_ids_and_classes(
    r: redis.Redis, spawn_worker: object
) -> None:
    client = Client(r)
    assert client.enqueue_to("jobs", "WithId", 1, job_id="order-42") == "order-42"
    # the id the enqueuer chose
    assert r.lindex("resque:queue:jobs", 0) == b'{"class":"WithId","args":[1],"id":"order-42"}'
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


def test_a_record_redis_cannot_take_is_written_readably_and_never_blocks_the_rest(
    r: redis.Redis,
) -> None:
    buffer = HistoryBuffer(KEYS, HistorySettings(), clock=lambda: 1000.0)
    # An exception message decoded with surrogateescape: not encodable as UTF-8.
    buffer.add(_job("A", [1]), "failure", 1.0, "ValueError: bad \udcff byte", finished_at=999.0)
    buffer.add(_job("B", [2]), "success", 1.0, None, finished_at=999.5)
    assert buffer.write(r) == 2 and len(buffer) == 0
    records = {rec.class_name: rec for rec in History(r, KEYS).recent()}
    assert records["A"].error == "ValueError: bad \\udcff byte"
    assert records["B"].outcome == "success"


def test_a_record_that_cannot_be_built_is_logged_and_dropped_not_raised(
    r: redis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    # Records are built in the slot's job report: a failure there must not reach the job.
    buffer = HistoryBuffer(KEYS, HistorySettings(), clock=lambda: 1000.0)
    broken = Job(queue="jobs", raw=b'{"class":"A","args":["\xff"]}', worker_id="h:1:jobs")
    broken.payload = {"class": "A", "args": ["?"]}  # (a payload claimed decoded: it is not)
    with caplog.at_level("ERROR", logger="pyresqueworker"):
        buffer.add(broken, "success", 1.0, None, finished_at=999.0)
    assert len(buffer) == 0
    assert "could not build a history record" in caplog.text
    buffer.add(_job("B", [2]), "success", 1.0, None, finished_at=999.5)
    assert buffer.write(r) == 1
    assert [rec.class_name for rec in History(r, KEYS).recent()] == ["B"]
