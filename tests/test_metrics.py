"""Prometheus metrics: the worker's counters, the Redis collector, and ``--metrics-port``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
import redis
from conftest import free_port
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from worker_helpers import WorkerProc, failures, ran, wait_started, wait_until, worker_env

from pyresqueworker.jobs.activejob import job_data, wrapper_payload
from pyresqueworker.protocol import wire
from pyresqueworker.protocol.job import Job
from pyresqueworker.protocol.queues import QueueSpec
from pyresqueworker.worker._metrics_redis import RedisCollector, enqueued_at
from pyresqueworker.worker.config import WorkerConfig
from pyresqueworker.worker.metrics import NULL_METRICS, MetricsError, PrometheusMetrics
from pyresqueworker.worker.metrics_server import MetricsExporter, MetricsServer

Spawn = Callable[..., WorkerProc]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
KEYS = wire.Keys("resque:")
NOW = 1_700_000_030.5  # the injected clock of the collector tests


def job(queue: str = "q", class_name: str = "Archive") -> Job:
    return Job(queue=queue, raw=b"{}", payload={"class": class_name, "args": []})


def value(registry: CollectorRegistry, name: str, **labels: str) -> Optional[float]:
    return registry.get_sample_value(name, labels)


def collected(collector: RedisCollector) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in collector.collect() for s in family.samples}


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return parse(reply.read().decode())


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


# -- what the worker reports --------------------------------------------------------------------


def test_null_metrics_takes_every_call_and_records_nothing() -> None:
    assert not NULL_METRICS.enabled
    NULL_METRICS.job_started(job())
    NULL_METRICS.job_finished(job(), "success", 0.1)
    NULL_METRICS.reconnected()
    NULL_METRICS.recovered(2, "requeued")


def test_jobs_are_counted_by_queue_class_and_outcome_with_their_durations() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    for outcome, seconds in (("success", 0.002), ("success", 0.02), ("failure", 2.0)):
        metrics.job_started(job())
        metrics.job_finished(job(), outcome, seconds)
    metrics.job_started(job("other", "Mail"))
    metrics.job_finished(job("other", "Mail"), "retried", 0.5)

    labels = {"queue": "q", "class": "Archive"}
    assert value(registry, "pyresque_jobs_total", **labels, outcome="success") == 2
    assert value(registry, "pyresque_jobs_total", **labels, outcome="failure") == 1
    assert value(registry, "pyresque_jobs_total", queue="other", **{"class": "Mail"},
                 outcome="retried") == 1
    assert value(registry, "pyresque_job_duration_seconds_count", **labels) == 3
    assert value(registry, "pyresque_job_duration_seconds_sum", **labels) == pytest.approx(2.022)
    assert value(registry, "pyresque_job_duration_seconds_bucket", **labels, le="0.005") == 1
    assert value(registry, "pyresque_job_duration_seconds_bucket", **labels, le="1.0") == 2


def test_in_flight_counts_jobs_between_start_and_finish() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.job_started(job())
    metrics.job_started(job())
    assert value(registry, "pyresque_jobs_in_flight", queue="q", **{"class": "Archive"}) == 2
    metrics.job_finished(job(), "success", 0.1)
    assert value(registry, "pyresque_jobs_in_flight", queue="q", **{"class": "Archive"}) == 1


def test_active_job_is_counted_under_its_job_class_and_bad_payloads_as_unknown() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    aj = Job(queue="default", raw=b"{}", payload=wrapper_payload(job_data("HelloJob", [])))
    undecodable = Job(queue="default", raw=b"\xff", decode_error="not UTF-8")
    for running in (aj, undecodable):
        metrics.job_started(running)
        metrics.job_finished(running, "success", 0.1)
    for class_name in ("HelloJob", "unknown"):
        assert value(registry, "pyresque_jobs_total", queue="default",
                     **{"class": class_name}, outcome="success") == 1


def test_class_labels_are_capped_and_later_classes_fold_into_other() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, max_classes=3)
    for n in range(10):
        metrics.job_started(job(class_name=f"C{n}"))
        metrics.job_finished(job(class_name=f"C{n}"), "success", 0.1)
    metrics.job_started(job(class_name="C1"))  # a class seen before the cap keeps its label
    metrics.job_finished(job(class_name="C1"), "success", 0.1)

    classes = {s.labels["class"]: s.value for f in registry.collect() for s in f.samples
               if s.name == "pyresque_jobs_total"}
    assert classes == {"C0": 1, "C1": 2, "C2": 1, "other": 7}


def test_reconnects_and_recoveries_are_counted_and_recoveries_start_at_zero() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    assert value(registry, "pyresque_recoveries_total", how="requeued") == 0
    metrics.reconnected()
    metrics.recovered(3, "requeued")
    metrics.recovered(0, "failed")
    metrics.recovered(1, "failed")
    assert value(registry, "pyresque_redis_reconnects_total") == 1
    assert value(registry, "pyresque_recoveries_total", how="requeued") == 3
    assert value(registry, "pyresque_recoveries_total", how="failed") == 1


# -- what is read from Redis at scrape time -----------------------------------------------------


def test_queue_depth_and_latency_of_the_oldest_active_job(r: redis.Redis) -> None:
    oldest = wrapper_payload(job_data("HelloJob", [], enqueued_at=NOW - 30))
    newer = wrapper_payload(job_data("HelloJob", [], enqueued_at=NOW - 1))
    r.sadd(KEYS.queues, "default", "plain", "empty")
    r.rpush(KEYS.queue("default"), wire.dumps(oldest), wire.dumps(newer))
    r.rpush(KEYS.queue("plain"), wire.dumps({"class": "Archive", "args": [1]}))

    samples = collected(RedisCollector(r, KEYS, clock=lambda: NOW))

    def at(name: str, queue: str) -> Optional[float]:
        return samples.get((name, frozenset({("queue", queue)})))

    assert at("pyresque_queue_depth", "default") == 2
    assert at("pyresque_queue_latency_seconds", "default") == pytest.approx(30.0)
    assert at("pyresque_queue_depth", "plain") == 1
    assert at("pyresque_queue_latency_seconds", "plain") is None  # Resque payloads carry no time
    assert at("pyresque_queue_depth", "empty") == 0
    assert at("pyresque_queue_latency_seconds", "empty") == 0
    assert samples[("pyresque_redis_up", frozenset())] == 1


def test_latency_uses_redis_time_by_default(r: redis.Redis) -> None:
    from pyresqueworker import Client

    Client(r).enqueue_active_job("HelloJob", "world", queue="aj")
    samples = collected(RedisCollector(r, KEYS))
    latency = samples[("pyresque_queue_latency_seconds", frozenset({("queue", "aj")}))]
    assert latency >= 0


@pytest.mark.parametrize(("payload", "expected"), [
    ({"class": "A", "args": [], "enqueued_at": NOW - 5}, NOW - 5),
    ({"class": "A", "args": [], "enqueued_at": "2023-11-14T22:13:20Z"}, 1_700_000_000.0),
    ({"class": "A", "args": []}, None),
    ({"class": "A", "enqueued_at": True}, None),
    ({"class": "A", "enqueued_at": "yesterday"}, None),
    ([1, 2], None),
])
def test_enqueue_time_comes_from_the_payload_only(payload: object, expected: Optional[float],
                                                 ) -> None:
    assert enqueued_at(wire.dumps(payload).encode()) == expected


def test_hostile_queue_heads_never_break_a_scrape(r: redis.Redis) -> None:
    r.sadd(KEYS.queues, "junk", "huge", "wrongtype", "ok")
    r.rpush(KEYS.queue("junk"), b"\xff not json")
    big = {"class": "A", "args": ["x" * 2000], "enqueued_at": NOW - 9}
    r.rpush(KEYS.queue("huge"), wire.dumps(big))
    r.set(KEYS.queue("wrongtype"), "a string")
    r.rpush(KEYS.queue("ok"), wire.dumps({"class": "A", "enqueued_at": NOW - 2}))

    samples = collected(RedisCollector(r, KEYS, clock=lambda: NOW, head_limit=1000))

    def at(name: str, queue: str) -> Optional[float]:
        return samples.get((name, frozenset({("queue", queue)})))

    assert at("pyresque_queue_depth", "junk") == 1
    assert at("pyresque_queue_latency_seconds", "junk") is None
    assert at("pyresque_queue_depth", "huge") == 1
    assert at("pyresque_queue_latency_seconds", "huge") is None  # over head_limit: not read
    assert at("pyresque_queue_depth", "wrongtype") is None
    assert at("pyresque_queue_latency_seconds", "ok") == pytest.approx(2.0)


def test_heartbeat_ages_of_this_hosts_workers_failed_list_and_worker_count(
    r: redis.Redis,
) -> None:
    r.hset(KEYS.heartbeats, mapping={
        "me:1:q": wire.heartbeat_value(int(NOW) - 10), "me:2-1:q": "not a time",
        "other:3:q": wire.heartbeat_value(int(NOW) - 20)})
    r.sadd(KEYS.workers, "me:1:q", "me:2-1:q", "other:3:q")
    r.rpush(KEYS.failed, "{}", "{}")

    mine = collected(RedisCollector(r, KEYS, "me", clock=lambda: NOW))
    every = collected(RedisCollector(r, KEYS, None, clock=lambda: NOW))

    ages = {dict(labels)["worker"]: v for (name, labels), v in mine.items()
            if name == "pyresque_worker_heartbeat_age_seconds"}
    assert ages == {"me:1:q": pytest.approx(10.5)}
    assert ("pyresque_worker_heartbeat_age_seconds",
            frozenset({("worker", "other:3:q")})) in every
    assert mine[("pyresque_failed_jobs", frozenset())] == 2
    assert mine[("pyresque_workers", frozenset())] == 3


def test_unreachable_redis_gives_redis_up_zero_instead_of_an_error() -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=1)
    samples = collected(RedisCollector(down, KEYS))
    assert samples == {("pyresque_redis_up", frozenset()): 0}


# -- serving ------------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def config(redis_url: str, port: int) -> WorkerConfig:
    return WorkerConfig(queues=QueueSpec.parse("q"), redis_url=redis_url, metrics_port=port)


def test_a_port_in_use_is_one_clear_error(busy_port: int) -> None:
    with pytest.raises(MetricsError, match=rf"^cannot serve metrics on 127\.0\.0\.1:{busy_port}: "):
        MetricsServer(CollectorRegistry(), "127.0.0.1", busy_port)


def test_single_process_exporter_serves_its_metrics_and_redis_gauges(redis_url: str) -> None:
    exporter = MetricsExporter(config(redis_url, free_port()), multiprocess=False)
    try:
        exporter.start()
        exporter.metrics.job_started(job())
        assert exporter.server is not None
        samples = scrape(exporter.server.port)
    finally:
        exporter.close()
    assert samples[("pyresque_jobs_in_flight", frozenset({("queue", "q"), ("class", "Archive")}))]
    assert samples[("pyresque_redis_up", frozenset())] == 1


def test_multiprocess_mode_refuses_a_prometheus_client_imported_too_early(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(MetricsError, match="imported before PROMETHEUS_MULTIPROC_DIR"):
        MetricsExporter(config(redis_url, free_port()), multiprocess=True)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone again


def test_a_multiprocess_dir_set_by_the_user_must_exist(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(MetricsError, match=r"PROMETHEUS_MULTIPROC_DIR .* is not a directory"):
        MetricsExporter(config(redis_url, free_port()), multiprocess=True)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "missing")  # left alone


def test_missing_prometheus_client_is_one_line_and_exit_1(redis_url: str) -> None:
    script = ("import sys; sys.modules['prometheus_client'] = None\n"
              "from pyresqueworker.cli.work import work_main\n"
              f"work_main(['-q', 'q', '--redis', {redis_url!r}, '--metrics-port', "
              f"'{free_port()}'])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, env=worker_env(redis_url))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "pyresque-work: error: --metrics-port needs the prometheus-client package: "
        "pip install 'pyresqueworker[metrics]'"]


# -- a real worker with --processes 2 -----------------------------------------------------------


def metrics_worker(spawn_worker: Spawn, tmp_path: Path, port: int) -> WorkerProc:
    env = {"TMPDIR": str(tmp_path)}  # where its multiprocess directory goes
    supervisor = spawn_worker("--queues", "m", "--processes", "2", "--metrics-port", str(port),
                              env=env)
    wait_until(lambda: "serving metrics" in supervisor.log() or None, "metrics server")
    return supervisor


def test_two_processes_are_served_as_one_sum_and_clean_up_at_exit(
    r: redis.Redis, spawn_worker: Spawn, tmp_path: Path,
) -> None:
    port = free_port()
    supervisor = metrics_worker(spawn_worker, tmp_path, port)
    r.sadd("resque:queues", "m")  # as Resque.enqueue does: the collector reads queues from it
    for tag in ("a", "b"):  # one Hold job keeps each single-slot process busy
        r.rpush("resque:queue:m", wire.dumps({"class": "Hold", "args": [tag]}))
    started = wait_started(r, 2)
    assert len({line["pid"] for line in started}) == 2  # both processes are working
    hold = frozenset({("queue", "m"), ("class", "Hold")})
    assert scrape(port)[("pyresque_jobs_in_flight", hold)] == 2
    r.set("test:release:a", 1)
    r.set("test:release:b", 1)

    jobs = [{"class": "Record", "args": [n]} for n in range(12)]
    jobs += [{"class": "Boom", "args": [f"no {n}"]} for n in range(6)]
    r.rpush("resque:queue:m", *[wire.dumps(j) for j in jobs])
    wait_until(lambda: (len(ran(r)) == 14 and len(failures(r)) == 6) or None, "20 finished jobs")

    def counted() -> Optional[Samples]:  # the last completions are written just after the log
        samples = scrape(port)
        return samples if total(samples, "pyresque_jobs_total") == 20 else None

    samples = wait_until(counted, "20 counted jobs")
    assert total(samples, "pyresque_jobs_total", outcome="success") == 14
    assert total(samples, "pyresque_jobs_total", outcome="failure", **{"class": "Boom"}) == 6
    assert total(samples, "pyresque_job_duration_seconds_count") == 20
    assert samples[("pyresque_jobs_in_flight", hold)] == 0
    assert samples[("pyresque_failed_jobs", frozenset())] == 6
    assert samples[("pyresque_queue_depth", frozenset({("queue", "m")}))] == 0
    assert samples[("pyresque_workers", frozenset())] == 2
    assert len([d for d in tmp_path.iterdir() if d.name.startswith("pyresque-metrics-")]) == 1

    assert supervisor.stop(signal.SIGTERM) == 0
    assert not [d for d in tmp_path.iterdir() if d.name.startswith("pyresque-metrics-")]


def test_a_killed_process_leaves_no_job_in_flight_and_its_recovery_is_counted(
    r: redis.Redis, spawn_worker: Spawn, tmp_path: Path,
) -> None:
    port = free_port()
    supervisor = metrics_worker(spawn_worker, tmp_path, port)
    r.rpush("resque:queue:m", wire.dumps({"class": "Hold", "args": ["k"]}))
    victim = wait_started(r, 1)[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    second = wait_started(r, 2)[1]  # recovered by the supervisor, run again by a live process
    assert second["pid"] != victim

    hold = frozenset({("queue", "m"), ("class", "Hold")})

    def dropped() -> Optional[Samples]:
        # The dead process's 1 is dropped when the supervisor reaps it (it looks every 50 ms);
        # the sibling process's prune may have requeued the job and run it before that.
        samples = scrape(port)
        return samples if samples.get(("pyresque_jobs_in_flight", hold)) == 1 else None

    samples = wait_until(dropped, "the dead process's job no longer in flight")
    assert samples[("pyresque_recoveries_total", frozenset({("how", "requeued")}))] == 1
    r.set("test:release:k", 1)
    assert supervisor.stop(signal.SIGTERM) == 0


def test_worker_with_its_metrics_port_in_use_exits_with_one_line(
    spawn_worker: Spawn, busy_port: int,
) -> None:
    worker = spawn_worker("--queues", "m", "--metrics-port", str(busy_port))
    assert worker.wait_exit() == 1
    assert worker.log().splitlines() == [
        f"pyresque-work: error: cannot serve metrics on 127.0.0.1:{busy_port}: "
        "Address already in use"]
