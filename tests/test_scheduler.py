"""The scheduler: resque-scheduler's moving of due items (§15.3) and master lock (§15.4)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from conftest import ROOT, free_port

from pyresqueworker.client._client import Client
from pyresqueworker.client.delayed import DelayedQueue
from pyresqueworker.worker.scheduler import Scheduler, default_lock_value

NOW = 1_705_312_200
LOCK = "resque:resque:resque_scheduler_master_lock"


class Clock:
    """A settable clock, so no test sleeps for the minutes a schedule spans."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(r, queue_for={"Registered": "reg"}.get)


@pytest.fixture
def dq(client: Client, clock: Clock) -> DelayedQueue:
    return DelayedQueue(client, clock=clock)


@pytest.fixture
def sched(client: Client, clock: Clock) -> Scheduler:
    return Scheduler(client, interval=0.01, clock=clock, lock_value="py-a:1")


def wait_for(condition: object, what: str) -> None:
    """Poll a condition with a generous deadline (the deadline is not what is tested)."""
    deadline = time.monotonic() + 20
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_moves_due_items_in_order_and_leaves_future_ones(
    r: redis.Redis, dq: DelayedQueue, sched: Scheduler, clock: Clock
) -> None:
    dq.enqueue_at(NOW + 20, "A", 3, queue="q")
    dq.enqueue_at(NOW + 10, "A", 1, queue="q")
    dq.enqueue_at(NOW + 10, "B", {"k": "é"}, queue="other")
    dq.enqueue_at(NOW + 10, "A", 2, queue="q")
    dq.enqueue_at(NOW + 30, "A", 4, queue="q")
    clock.now = NOW + 20
    assert sched.run_once() == 4
    assert r.lrange("resque:queue:q", 0, -1) == [
        b'{"class":"A","args":[1]}', b'{"class":"A","args":[2]}', b'{"class":"A","args":[3]}'
    ]
    assert r.lrange("resque:queue:other", 0, -1) == ['{"class":"B","args":[{"k":"é"}]}'.encode()]
    assert r.smembers("resque:queues") == {b"q", b"other"}
    # Moved timestamps are gone from all three structures; the future one is untouched.
    assert dq.delayed_timestamps() == [NOW + 30]
    assert not r.exists(f"resque:delayed:{NOW + 10}", f"resque:delayed:{NOW + 20}")
    assert r.keys("resque:timestamps:*") == [
        b'resque:timestamps:{"class":"A","args":[4],"queue":"q"}'
    ]
    assert sched.run_once() == 0
    clock.now = NOW + 30
    assert sched.run_once() == 1
    assert sorted(r.keys()) == sorted([LOCK.encode(), b"resque:queue:other", b"resque:queue:q",
                                       b"resque:queues"])


def test_more_than_one_batch_at_one_timestamp(
    r: redis.Redis, dq: DelayedQueue, sched: Scheduler, clock: Clock
) -> None:
    pipe = r.pipeline(transaction=False)
    for n in range(250):
        dq.enqueue_at(NOW + 1, "A", n, queue="q", pipeline=pipe)
    pipe.execute()
    clock.now = NOW + 1
    assert sched.run_once() == 250
    assert [json.loads(raw)["args"] for raw in r.lrange("resque:queue:q", 0, -1)] == [
        [n] for n in range(250)
    ]
    assert dq.delayed_count() == 0
    assert dq.delayed_timestamps() == []
    assert r.keys("resque:timestamps:*") == []


def test_exactly_one_full_batch_is_cleaned_up(
    r: redis.Redis, dq: DelayedQueue, client: Client, clock: Clock
) -> None:
    sched = Scheduler(client, clock=clock, batch_size=3, lock_value="py-a:1")
    for n in range(3):
        dq.enqueue_at(NOW + 1, "A", n, queue="q")
    clock.now = NOW + 5
    assert sched.run_once() == 3
    assert not r.exists("resque:delayed_queue_schedule", f"resque:delayed:{NOW + 1}")


def test_emptied_timestamp_is_cleaned_up(
    r: redis.Redis, dq: DelayedQueue, sched: Scheduler, clock: Clock
) -> None:
    dq.enqueue_at(NOW + 1, "A", queue="q")
    assert dq.remove_delayed("A", queue="q") == 1
    assert dq.delayed_timestamps() == [NOW + 1]
    clock.now = NOW + 1
    assert sched.run_once() == 0
    assert r.keys() == [LOCK.encode()]


def test_items_enqueue_as_resque_scheduler_does(
    r: redis.Redis, sched: Scheduler, clock: Clock
) -> None:
    """Hash args are wrapped, nil args become [], a missing queue uses the class's own, and
    items Ruby could not enqueue are dropped (and still removed from their structures)."""
    ts = NOW - 5
    raw_items = [
        b'{"class":"H","args":{"a":1},"queue":"q"}',
        b'{"class":"N","args":null,"queue":"q"}',
        b'{"class":"S","args":"x","queue":"q"}',
        b'{"class":"Registered","args":[1]}',
        b'{"class":"Unregistered","args":[1]}',
        b'{"args":[1],"queue":"q"}',
        b"not json \xff",
        b"[1]",
    ]
    r.rpush(f"resque:delayed:{ts}", *raw_items)
    for raw in raw_items:
        r.sadd(b"resque:timestamps:" + raw, f"delayed:{ts}")
    r.zadd("resque:delayed_queue_schedule", {str(ts): ts})
    assert sched.run_once() == len(raw_items)
    assert r.lrange("resque:queue:q", 0, -1) == [
        b'{"class":"H","args":[{"a":1}]}',
        b'{"class":"N","args":[]}',
        b'{"class":"S","args":["x"]}',
    ]
    assert r.lrange("resque:queue:reg", 0, -1) == [b'{"class":"Registered","args":[1]}']
    assert sorted(r.keys()) == sorted([
        LOCK.encode(), b"resque:queues", b"resque:queue:q", b"resque:queue:reg"
    ])


def test_a_batch_changed_under_watch_is_retried(
    r: redis.Redis, dq: DelayedQueue, sched: Scheduler, clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(3):
        dq.enqueue_at(NOW + 1, "A", n, queue="q")
    other = DelayedQueue(Client(redis.Redis(connection_pool=r.connection_pool)), clock=lambda: NOW)
    original = Scheduler._queue_push
    pushed: list[int] = []

    def racing_push(self: Scheduler, pipe: object, raw: bytes) -> None:
        if not pushed:  # a producer adds to the watched list while the batch is built
            pushed.append(1)
            other.enqueue_at(NOW + 1, "A", 99, queue="q")
        original(self, pipe, raw)

    monkeypatch.setattr(Scheduler, "_queue_push", racing_push)
    clock.now = NOW + 1
    assert sched.run_once() == 4
    assert [json.loads(x)["args"] for x in r.lrange("resque:queue:q", 0, -1)] == [
        [0], [1], [2], [99]
    ]
    assert dq.delayed_timestamps() == []


# -- master lock (spec §15.4) -----------------------------------------------------------------


def test_lock_key_value_and_ttl(r: redis.Redis, client: Client, sched: Scheduler) -> None:
    assert client.keys.scheduler_master_lock == LOCK
    assert sched.is_master()
    assert r.get(LOCK) == b"py-a:1"
    assert 170 <= r.ttl(LOCK) <= 180
    r.expire(LOCK, 5)
    assert sched.is_master()  # still ours: the TTL is refreshed
    assert r.ttl(LOCK) > 170


def test_default_lock_value_is_fqdn_and_pid() -> None:
    assert default_lock_value() == f"{socket.getfqdn()}:{os.getpid()}"


def test_only_one_of_two_schedulers_moves_jobs(
    r: redis.Redis, dq: DelayedQueue, client: Client, clock: Clock, sched: Scheduler
) -> None:
    rival = Scheduler(client, clock=clock, lock_value="py-b:2")
    dq.enqueue_at(NOW + 1, "A", 1, queue="q")
    clock.now = NOW + 1
    assert rival.run_once() == 1
    dq.enqueue_at(NOW + 2, "A", 2, queue="q")
    clock.now = NOW + 2
    assert not sched.is_master()
    assert sched.run_once() == 0
    assert r.llen("resque:queue:q") == 1
    assert rival.run_once() == 1
    assert r.get(LOCK) == b"py-b:2"


def test_ruby_held_lock_blocks_until_it_expires(
    r: redis.Redis, dq: DelayedQueue, sched: Scheduler, clock: Clock
) -> None:
    r.set(LOCK, "ruby-host:123", ex=180)
    dq.enqueue_at(NOW + 1, "A", 1, queue="q")
    clock.now = NOW + 1
    assert sched.run_once() == 0
    assert r.llen("resque:queue:q") == 0
    assert r.get(LOCK) == b"ruby-host:123"
    assert 170 <= r.ttl(LOCK) <= 180  # ours did not refresh someone else's lock
    assert not sched.release_lock()
    assert r.get(LOCK) == b"ruby-host:123"
    r.pexpire(LOCK, 1)  # the Ruby scheduler died; its lock lapses
    wait_for(lambda: not r.exists(LOCK), "the Ruby lock to expire")
    assert sched.run_once() == 1
    assert r.get(LOCK) == b"py-a:1"


def test_run_moves_jobs_and_releases_the_lock_on_stop(
    r: redis.Redis, dq: DelayedQueue, sched: Scheduler, clock: Clock
) -> None:
    dq.enqueue_at(NOW + 1, "A", 1, queue="q")
    stop = threading.Event()
    thread = threading.Thread(target=sched.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: r.exists(LOCK), "the scheduler to take the lock")
        assert r.llen("resque:queue:q") == 0
        clock.now = NOW + 1
        wait_for(lambda: r.llen("resque:queue:q") == 1, "the job to be moved")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    assert not r.exists(LOCK)


def test_constructor_checks() -> None:
    client = Client(redis.Redis(port=free_port()))
    with pytest.raises(ValueError):
        Scheduler(client, interval=-1)
    with pytest.raises(ValueError):
        Scheduler(client, interval=200)
    with pytest.raises(ValueError):
        Scheduler(client, batch_size=0)


# -- Ruby and the command line ----------------------------------------------------------------


@pytest.mark.ruby
def test_moves_items_ruby_scheduled(ruby: str, redis_url: str, r: redis.Redis) -> None:
    """An item written as resque-scheduler's delayed_push writes it, with only redis-rb."""
    script = r"""
require "redis"
require "json"
r = Redis.new(url: ARGV[0])
ts = ARGV[1].to_i
item = JSON.generate({"class" => "Mailer", "args" => [{"id" => 1}, "é"], "queue" => "mail"})
r.rpush("resque:delayed:#{ts}", item)
r.sadd("resque:timestamps:#{item}", "delayed:#{ts}")
r.zadd("resque:delayed_queue_schedule", ts, ts)
"""
    proc = subprocess.run([ruby, "-e", script, redis_url, str(NOW)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    client = Client(r)
    assert DelayedQueue(client).scheduled_at("Mailer", {"id": 1}, "é", queue="mail") == [NOW]
    assert Scheduler(client, clock=lambda: NOW, lock_value="py:1").run_once() == 1
    assert r.lrange("resque:queue:mail", 0, -1) == [
        '{"class":"Mailer","args":[{"id":1},"é"]}'.encode()
    ]
    assert sorted(r.keys()) == sorted([LOCK.encode(), b"resque:queue:mail", b"resque:queues"])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyresqueworker.cli.scheduler", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture
def cli_process(redis_url: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyresqueworker.cli.scheduler", "--redis", redis_url,
         "--namespace", "app", "--interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=20)


def test_cli_moves_due_jobs_and_releases_on_term(
    r: redis.Redis, cli_process: subprocess.Popen[str]
) -> None:
    ts = int(time.time()) - 10
    item = b'{"class":"A","args":[1],"queue":"q"}'
    r.rpush(f"app:delayed:{ts}", item)
    r.sadd(b"app:timestamps:" + item, f"delayed:{ts}")
    r.zadd("app:delayed_queue_schedule", {str(ts): ts})
    wait_for(lambda: r.llen("app:queue:q") == 1, "the CLI scheduler to move the job")
    assert r.lrange("app:queue:q", 0, -1) == [b'{"class":"A","args":[1]}']
    assert r.get("app:app:resque_scheduler_master_lock") == (
        f"{socket.getfqdn()}:{cli_process.pid}".encode()
    )
    cli_process.send_signal(signal.SIGTERM)
    assert cli_process.wait(20) == 0
    assert not r.exists("app:app:resque_scheduler_master_lock")


def test_cli_bad_url_is_one_line() -> None:
    proc = run_cli("--redis", "http://user:secret@host/0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("pyresque-scheduler: error: unsupported Redis URL")
    assert proc.stderr.count("\n") == 1 and "secret" not in proc.stderr


def test_cli_unreachable_redis_is_one_line() -> None:
    proc = run_cli("--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert proc.returncode == 1
    assert proc.stderr.startswith("pyresque-scheduler: error: cannot reach Redis at ")
    assert proc.stderr.count("\n") == 1


def test_cli_bad_interval_is_one_line() -> None:
    proc = run_cli("--interval", "0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("pyresque-scheduler: error: ")
    assert proc.stderr.count("\n") == 1


def test_cli_hides_the_redis_password_from_ps() -> None:
    from conftest import RedisServer

    server = RedisServer(extra_args=("--requirepass", "s3cret-Pa55"))
    url = f"redis://:s3cret-Pa55@127.0.0.1:{server.port}/0"
    proc = subprocess.Popen([sys.executable, "-m", "pyresqueworker.cli.scheduler", "--redis", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        def title() -> str:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as handle:
                return handle.read().replace(b"\0", b" ").decode()

        wait_for(lambda: title().startswith("pyresque-scheduler "), "the scheduler's title")
        assert "s3cret" not in title() and f"127.0.0.1:{server.port}" in title()
    finally:
        proc.kill()
        proc.wait(10)
        server.stop()
