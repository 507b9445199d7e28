"""The pieces behind "no thread ever dies": error classification, outage logging, locators,
the Sentinel failover watch, capped log fields and the supervisor's restart delay.

Fast tests without a server; the fault suite (tests/test_faults_*.py) runs them for real.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
import redis

from pyresqueworker.log import MAX_FIELD_CHARS, TextFormatter, setup_logging
from pyresqueworker.protocol import wire
from pyresqueworker.protocol._failover_watch import FailoverWatch
from pyresqueworker.protocol._locate import NodeLocator, SentinelLocator
from pyresqueworker.protocol._outage import Outage, OutageBook, is_redis_away
from pyresqueworker.protocol.connection import ConfigError, ConnectionFactory, describe
from pyresqueworker.protocol.redis_errors import RedisUnavailable, raise_if_away, transient_code
from pyresqueworker.worker._supervisor import HEALTHY_RUN, Supervisor


@pytest.mark.parametrize("error, code", [
    (redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'. "
                                    "script: abc, on @user_script:22."), "OOM"),
    (redis.exceptions.ResponseError("NOREPLICAS Not enough good replicas to write."),
     "NOREPLICAS"),
    (redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
     "READONLY"),
    (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), "LOADING"),
    (redis.exceptions.MovedError("2409 127.0.0.1:6671"), "MOVED"),
    (redis.exceptions.ResponseError("MASTERDOWN Link with MASTER is down"), "MASTERDOWN"),
    (redis.exceptions.ResponseError("BUSY Redis is busy running a script."), "BUSY"),
    (redis.exceptions.ResponseError("CLUSTERDOWN The cluster is down"), "CLUSTERDOWN"),
    (redis.exceptions.ResponseError("TRYAGAIN Multiple keys request during rehashing"),
     "TRYAGAIN"),
    (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), None),
    (redis.exceptions.ResponseError("ERR unknown command"), None),
    (ValueError("OOM is not a reply here"), None),
])
def test_transient_error_replies_are_told_from_real_errors(
    error: Exception, code: str | None
) -> None:
    assert transient_code(error) == code
    assert is_redis_away(error) is (code is not None)


def test_a_connection_error_is_redis_away_and_so_is_redis_unavailable() -> None:
    assert is_redis_away(redis.exceptions.ConnectionError("refused"))
    assert is_redis_away(redis.exceptions.TimeoutError("slow"))
    unavailable = RedisUnavailable("OOM command not allowed", "OOM")
    assert isinstance(unavailable, redis.exceptions.ConnectionError)
    assert transient_code(unavailable) == "OOM"


def test_a_watch_error_caused_by_a_lost_connection_is_raised_as_that_error() -> None:
    def watch_error_during(cause: Exception) -> redis.exceptions.WatchError:
        try:
            try:
                raise cause
            except Exception:
                raise redis.exceptions.WatchError("A ConnectionError occurred") from None
        except redis.exceptions.WatchError as exc:
            exc.__context__ = cause
            return exc

    with pytest.raises(redis.exceptions.ConnectionError):
        raise_if_away(watch_error_during(redis.exceptions.ConnectionError("cut")))
    raise_if_away(redis.exceptions.WatchError("the key changed"))  # a real conflict: no raise


def test_an_outage_is_logged_once_per_process_and_once_when_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyresqueworker")
    book = OutageBook()
    slot, heartbeat = Outage("slot-0", book=book), Outage("housekeeping", book=book)
    down = redis.exceptions.ConnectionError("Connection refused")
    for _ in range(5):
        assert 0 <= slot.failed(down) <= 1.0
        heartbeat.failed(down)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["redis unavailable, retrying"]
    slot.succeeded()
    heartbeat.succeeded()  # the outage is already over: no second line
    infos = [r for r in caplog.records if r.getMessage() == "redis reachable again"]
    assert len(infos) == 1
    heartbeat.failed(down)  # a new outage opens with a new line
    assert sum(r.getMessage() == "redis unavailable, retrying"
               for r in caplog.records if r.levelno == logging.WARNING) == 2


def test_an_unexpected_error_is_logged_with_its_traceback_once_per_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pyresqueworker")
    loop = Outage("scheduler")
    for _ in range(3):
        try:
            raise KeyError("surprise")
        except KeyError as exc:
            loop.failed(exc)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert loop.active
    loop.succeeded()
    assert not loop.active


def test_node_locator_follows_moved_and_falls_back_to_seeds() -> None:
    locator = NodeLocator([("127.0.0.1", 7000), ("127.0.0.1", 7001)])
    assert locator.candidates() == [("127.0.0.1", 7000), ("127.0.0.1", 7001)]
    generation = locator.generation
    locator.moved(("127.0.0.1", 7002))
    assert locator.generation == generation + 1  # every connection reconnects
    assert locator.candidates()[0] == ("127.0.0.1", 7002)
    locator.unreachable(("127.0.0.1", 7002))  # the owner died: back to the seeds
    assert locator.candidates()[0] == ("127.0.0.1", 7000)
    locator.unreachable(("127.0.0.1", 7000))
    assert locator.candidates()[0] == ("127.0.0.1", 7001)


class _NoSentinel:
    def discover_master(self, _service: str) -> tuple[str, int]:
        return ("127.0.0.1", 6379)


def test_failover_watch_holds_claims_until_the_replica_is_promoted() -> None:
    locator = SentinelLocator(_NoSentinel(), "mymaster")  # type: ignore[arg-type]
    watch = FailoverWatch(locator, [])
    watch.on_event("+failover-state-send-slaveof-noone",
                   "slave 127.0.0.1:6380 127.0.0.1 6380 @ other 127.0.0.1 6390")
    assert not locator.holding()  # another service's failover
    watch.on_event("+failover-state-send-slaveof-noone",
                   "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379")
    assert locator.holding()
    generation = locator.generation
    watch.on_event("+promoted-slave",
                   "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379")
    assert not locator.holding()
    assert locator.generation == generation + 1
    assert locator.candidates() == [("127.0.0.1", 6380)]
    watch.on_event("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380")
    assert locator.candidates() == [("127.0.0.1", 6379)]  # asks Sentinel again
    watch.on_event("+failover-state-send-slaveof-noone",
                   "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379")
    watch.on_event("-failover-abort-slave-timeout",
                   "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379")
    assert not locator.holding()


def test_cluster_urls_name_any_nodes() -> None:
    factory = ConnectionFactory("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/")
    assert factory.is_cluster
    client = factory.connect()
    assert describe(client) == "cluster 127.0.0.1:7000,127.0.0.1:7001"
    with pytest.raises(ConfigError, match="only database 0"):
        ConnectionFactory("redis+cluster://127.0.0.1:7000/3")


@pytest.mark.parametrize("namespace, tagged", [
    ("{resque}:", True), ("app:{jobs}:", True), ("resque:", False), ("{}:", False),
    ("}{resque:", False),
])
def test_a_cluster_namespace_needs_a_hash_tag(namespace: str, tagged: bool) -> None:
    assert wire.has_hash_tag(namespace) is tagged


def test_log_fields_are_capped_in_text_and_json() -> None:
    record = logging.makeLogRecord({"msg": "job done", "levelname": "WARNING",
                                    "error": "x" * 10_000_000})
    line = TextFormatter().format(record)
    assert len(line) < MAX_FIELD_CHARS + 200
    assert "(9998000 more characters)" in line
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    logging.getLogger("pyresqueworker").warning("job done", extra={"error": "y" * 100_000})
    data = json.loads(stream.getvalue())
    assert len(data["error"]) < MAX_FIELD_CHARS + 100


def test_supervisor_restart_delay_starts_over_after_a_healthy_run() -> None:
    supervisor = Supervisor(1, lambda: 0)
    supervisor.started_at[0] = 100.0
    assert [supervisor.next_restart_delay(0, 101.0) for _ in range(3)] == [0.5, 1.0, 2.0]
    assert supervisor.next_restart_delay(0, 100.0 + HEALTHY_RUN) == 0.5
