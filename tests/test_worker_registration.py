"""A running ``pyresque-work`` registers like a Ruby Resque worker (spec §5, §7, §8.1, §8.3).

Each test starts the real console script against the real test Redis and looks at what it
wrote, the way Ruby tools and resque-web read it.
"""

from __future__ import annotations

import signal
import socket
from datetime import datetime
from typing import Callable, Optional

import redis
from worker_helpers import (
    HEARTBEAT_RE,
    NS,
    RUBY_PROCLINE,
    STARTED_RE,
    WorkerProc,
    keys_mentioning,
    server_time,
    wait_ran,
    wait_started,
    wait_until,
)

from pyresqueworker import __version__

Spawn = Callable[..., WorkerProc]
HOST = socket.gethostname()
BERLIN = "Europe/Berlin"


def berlin_offset() -> str:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(BERLIN)).strftime("%z")


def test_one_slot_registers_a_plain_resque_id_with_ruby_time_formats(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "high=2,low=1", env={"TZ": BERLIN})
    [worker_id] = worker.wait_registered()
    # Distinct queue names without weights, the real pid of the process (spec §7.1).
    assert worker_id == f"{HOST}:{worker.pid}:high,low"
    started = r.get(NS + f"worker:{worker_id}:started")
    assert started is not None
    started_text = started.decode()
    assert STARTED_RE.match(started_text), started_text
    offset = berlin_offset()  # Time#to_s uses the worker's local zone
    assert started_text.endswith(" " + offset)
    beat = wait_until(lambda: r.hget(NS + "workers:heartbeat", worker_id), "a heartbeat")
    text = beat.decode()
    assert HEARTBEAT_RE.match(text), text
    assert text.endswith(offset[:3] + ":" + offset[3:])
    # The heartbeat is Redis server time, not the worker's clock.
    assert abs(datetime.fromisoformat(text).timestamp() - server_time(r)) <= 2
    assert r.get(NS + f"worker:{worker_id}") is None  # idle: no worker key


def test_heartbeat_refreshes_at_the_configured_interval(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "q", "--heartbeat-interval", "0.5", "--prune-after", "2")
    [worker_id] = worker.wait_registered()

    def beat() -> Optional[bytes]:
        return r.hget(NS + "workers:heartbeat", worker_id)

    first = wait_until(beat, "a heartbeat")

    def newer() -> Optional[bytes]:
        value = beat()
        return value if value not in (None, first) else None

    later = wait_until(newer, "a newer heartbeat", timeout=5)
    assert HEARTBEAT_RE.match(later.decode())
    assert datetime.fromisoformat(later.decode()) > datetime.fromisoformat(first.decode())


def test_extra_slots_get_pid_dash_n_ids_each_fully_registered(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "high,low", "--concurrency", "3")
    ids = worker.wait_registered(3)
    pid = worker.pid
    assert ids == [f"{HOST}:{pid}:high,low", f"{HOST}:{pid}-1:high,low",
                   f"{HOST}:{pid}-2:high,low"]
    wait_until(lambda: r.hlen(NS + "workers:heartbeat") == 3, "three heartbeats")
    assert sorted(b.decode() for b in r.hkeys(NS + "workers:heartbeat")) == sorted(ids)
    for worker_id in ids:
        started = r.get(NS + f"worker:{worker_id}:started")
        assert started is not None and STARTED_RE.match(started.decode())


def test_process_title_is_visible_to_rubys_same_host_prune(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "high,low")
    worker.wait_registered()
    title = worker.wait_title("Waiting for")
    assert RUBY_PROCLINE.search(title), title
    assert title == f"resque-{__version__}: Waiting for high,low"

    before = server_time(r)
    r.rpush(NS + "queue:high", '{"class":"Hold","args":["title"]}')
    wait_started(r)
    title = worker.wait_title("Processing")
    assert RUBY_PROCLINE.search(title), title
    prefix = f"resque-{__version__}: Processing high since "
    assert title.startswith(prefix) and title.endswith(" [Hold]"), title
    since = int(title[len(prefix):].split(" ")[0])
    assert before - 2 <= since <= server_time(r) + 2
    r.set("test:release:title", 1)
    wait_ran(r, 1)
    assert worker.wait_title("Waiting for high,low")


def test_clean_shutdown_removes_every_key_of_every_slot(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "q", "--concurrency", "2")
    ids = worker.wait_registered(2)
    r.rpush(NS + "queue:q", '{"class":"Record","args":[1]}', '{"class":"Boom","args":[]}')
    wait_until(lambda: int(r.get(NS + "stat:processed") or 0) == 2, "two processed jobs")
    assert any(r.exists(NS + f"stat:processed:{w}") for w in ids)
    assert keys_mentioning(r, ids)  # the check below can see what it looks for

    assert worker.stop(signal.SIGQUIT) == 0
    assert keys_mentioning(r, ids) == {}
    assert r.smembers(NS + "workers") == set()
    assert r.hlen(NS + "workers:heartbeat") == 0
    # Global stats and the failure stay: they are not the worker's own.
    assert r.get(NS + "stat:processed") == b"2" and r.llen(NS + "failed") == 1


def test_slot_removed_by_another_prune_registers_again_at_its_next_heartbeat(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    worker = spawn_worker("--queues", "q", "--concurrency", "2",
                          "--heartbeat-interval", "0.5", "--prune-after", "2")
    ids = worker.wait_registered(2)
    # What a Ruby prune (or Resque.remove_worker) does to an idle worker.
    with r.pipeline() as pipe:
        for worker_id in ids:
            pipe.srem(NS + "workers", worker_id)
            pipe.delete(NS + f"worker:{worker_id}:started")
            pipe.hdel(NS + "workers:heartbeat", worker_id)
        pipe.execute()
    assert worker.wait_registered(2, timeout=5) == ids
    for worker_id in ids:
        assert wait_until(lambda w=worker_id: r.get(NS + f"worker:{w}:started"), "started")
        assert wait_until(lambda w=worker_id: r.hget(NS + "workers:heartbeat", w), "heartbeat")
    assert "re-registering" in worker.log()
    # And it still works jobs as those ids.
    r.rpush(NS + "queue:q", '{"class":"Record","args":["after"]}')
    assert wait_ran(r, 1)[0]["worker"] in ids
