"""A slot alone in its process polls for its claim's reply before sleeping on it (spares a
Redis on the same host the wake-up); polling that keeps missing rests; every other slot
sleeps as before."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import redis
from claim_helpers import RUN_AT, WID
from click.testing import CliRunner

from pyresqueworker.cli import work as cli_work
from pyresqueworker.jobs.registry import Registry
from pyresqueworker.protocol import _spin
from pyresqueworker.protocol._spin import ReplySpin
from pyresqueworker.protocol.queues import QueueSpec
from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._claim import NO_FINISH, SUCCESS, Claimer
from pyresqueworker.worker._process import WorkerProcess
from pyresqueworker.worker._slot import Slot
from pyresqueworker.worker.config import WorkerConfig


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_the_wait_ends_when_the_reply_lands(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    spin = ReplySpin(30.0)  # a budget no test waits out: only the reply can end the wait
    timer = threading.Timer(0.01, theirs.sendall, [b"+OK\r\n"])
    timer.start()
    spin.wait(ours)
    timer.join()
    assert (spin.hits, spin.misses) == (1, 0)
    assert ours.recv(16) == b"+OK\r\n"


def test_a_closed_connection_ends_the_wait(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    spin = ReplySpin(30.0)
    theirs.close()
    spin.wait(ours)  # the caller's recv then sees the close and reconnects
    assert spin.misses == 0 and ours.recv(16) == b""


def test_a_late_reply_is_left_to_the_sleeping_read(
    pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, _ = pair
    spin = ReplySpin(0.001)
    spin.wait(ours)
    assert (spin.hits, spin.misses) == (0, 1)


def test_polling_that_keeps_missing_rests_then_tries_again(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = pair
    monkeypatch.setattr(_spin, "_REST_CALLS", 5)
    spin = ReplySpin(0.0001)
    for _ in range(_spin._MISSES_TO_REST):
        spin.wait(ours)
    assert spin.misses == _spin._MISSES_TO_REST
    theirs.sendall(b"+OK\r\n")  # would be a hit, but polling rests
    for _ in range(5):
        spin.wait(ours)
    assert (spin.hits, spin.misses) == (0, _spin._MISSES_TO_REST)
    spin.wait(ours)  # the rest is over
    assert spin.hits == 1


def test_a_new_connection_is_polled_not_the_old_one() -> None:
    spin = ReplySpin(30.0)
    for _ in range(2):  # a reconnect: a new socket, often with the old one's fd number
        ours, theirs = socket.socketpair()
        theirs.sendall(b"+OK\r\n")
        spin.wait(ours)
        ours.close()
        theirs.close()
    assert spin.hits == 2


def test_tls_sockets_are_not_polled() -> None:
    wrapped = ssl.create_default_context().wrap_socket(
        socket.socket(), do_handshake_on_connect=False, server_hostname="localhost")
    spin = ReplySpin(30.0)  # would poll for 30 s: nothing ever arrives on this socket
    spin.wait(wrapped)
    wrapped.close()
    assert (spin.hits, spin.misses) == (0, 0)


def test_a_polling_claimer_drains_a_queue_on_replies_it_polled_for(redis_url: str) -> None:
    conn = redis.Redis.from_url(redis_url, single_connection_client=True)
    keys = Keys("resque:")
    conn.rpush(keys.queue("high"), *[b'{"class":"Job","args":[%d]}' % i for i in range(50)])
    claimer = Claimer(conn, keys, WID, reply_spin=30.0)
    taken, finish = 0, NO_FINISH
    while claimer.claim(["high"], finish, RUN_AT) is not None:
        taken, finish = taken + 1, SUCCESS
    conn.close()
    spin = claimer.caller.spin
    assert taken == 50 and spin is not None
    assert spin.misses == 0 and spin.hits >= 51  # every claim's reply, the last empty one too


def _process(redis_url: str, **settings: object) -> WorkerProcess:
    config = WorkerConfig(queues=QueueSpec.parse("q"), redis_url=redis_url, **settings)  # type: ignore[arg-type]
    return WorkerProcess(config, Registry())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="polling needs a core to spare")
def test_only_a_lone_thread_slot_polls(redis_url: str) -> None:
    assert _process(redis_url).reply_spin == WorkerConfig.reply_spin
    slot = Slot(_process(redis_url), 0, "host:1:q")
    assert slot.claimer.caller.spin is not None
    for settings in ({"concurrency": 2}, {"execution": "asyncio"}, {"reply_spin": 0.0},
                     {"processes": os.cpu_count()}):
        process = _process(redis_url, **settings)
        assert process.reply_spin == 0.0, settings
        if process.execution == "threads":
            assert Slot(process, 0, "host:1:q").claimer.caller.spin is None


def test_the_flag_sets_the_budget_in_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[WorkerConfig] = []
    monkeypatch.setattr(cli_work, "run_worker", lambda config: seen.append(config) or 0)
    CliRunner().invoke(cli_work.work, ["--queues", "q", "--reply-spin-us", "50"],
                       catch_exceptions=False)
    assert seen[0].reply_spin == pytest.approx(50e-6)
    # (an out-of-range value is one line and exit 2: test_cli)
