"""What the dashboard's time series cost Redis: per minute (the sampling process, the others)
and per job (a worker run with and without ``--time-series``), from INFO commandstats.

Starts a private redis-server. Usage: ``python scripts/benchkit/series.py [--queues 10]
[--minutes 60] [--jobs 5000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # the package, and web_screenshot

from web_screenshot import redis_server  # noqa: E402

from pyresqueworker import Client  # noqa: E402
from pyresqueworker.protocol import wire  # noqa: E402
from pyresqueworker.worker.timeseries import MINUTE, SeriesStore, SeriesWriter  # noqa: E402


def commandstats(conn: redis.Redis) -> dict[str, tuple[int, float]]:
    """{command: (calls, usec)} since the last CONFIG RESETSTAT, without INFO and CONFIG."""
    stats = conn.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"]))
            for name, v in stats.items() if not name.startswith(("cmdstat_info", "cmdstat_config"))}


def measured(conn: redis.Redis, action: object, repeat: int) -> tuple[dict[str, tuple[int, float]],
                                                                       float]:
    """Commandstats of ``repeat`` calls of ``action`` and the client-side ms per call."""
    conn.config_resetstat()
    started = time.perf_counter()
    for _ in range(repeat):
        action()  # type: ignore[operator]
    elapsed = (time.perf_counter() - started) * 1000 / repeat
    return commandstats(conn), elapsed


def report(title: str, stats: dict[str, tuple[int, float]], per: int, wall_ms: float) -> None:
    calls = sum(c for c, _ in stats.values()) / per
    usec = sum(u for _, u in stats.values()) / per
    detail = ", ".join(f"{name} {c / per:g}" for name, (c, _) in sorted(stats.items()))
    print(f"{title}: {calls:g} commands, {usec:.1f} us of Redis time, {wall_ms:.2f} ms "
          f"client-side ({detail})")


def per_minute(url: str, queues: int, minutes: int) -> None:
    conn = redis.Redis.from_url(url)
    client = Client(conn)
    for n in range(queues):  # half ActiveJob payloads (their age is read), half plain
        for k in range(20):
            if n % 2:
                client.enqueue_active_job("HelloJob", k, queue=f"q{n}")
            else:
                client.enqueue_to(f"q{n}", "Plain", k)
    conn.set(wire.Keys().stat("processed"), 123_456)
    clock = [time.time()]
    store = SeriesStore(conn, wire.Keys())
    winner = SeriesWriter(store, "winner", lambda: clock[0])
    loser = SeriesWriter(store, "loser", lambda: clock[0])

    def win() -> None:
        clock[0] += MINUTE
        assert winner.tick()

    def lose() -> None:
        loser._tried = None  # the minute the winner took, seen by another process
        assert not loser.tick()

    stats, wall = measured(conn, win, minutes)
    report(f"sampling process, {queues} queues, per minute", stats, minutes, wall)
    stats, wall = measured(conn, lose, minutes)
    report("each other process, per minute", stats, minutes, wall)
    print(f"keys: minutes {conn.memory_usage(store.minutes_key)} bytes for "
          f"{conn.zcard(store.minutes_key)} samples; days {conn.zcard(store.days_key)} samples")
    conn.flushdb()


def per_job(url: str, jobs: int) -> None:
    conn = redis.Redis.from_url(url)
    client = Client(conn)
    work = shutil.which("pyresque-work") or "pyresque-work"
    for flag in ("--no-time-series", "--time-series"):
        conn.flushdb()
        with conn.pipeline(transaction=False) as pipe:
            for _ in range(jobs):
                client.enqueue_to("bench", "BenchNoop", pipeline=pipe)
            pipe.execute()
        conn.config_resetstat()
        env = {**os.environ, "BENCH_FRAMEWORK": "pyresque", "BENCH_REDIS_URL": url}
        jobs_file = str(ROOT / "scripts" / "benchkit" / "jobs.py")
        proc = subprocess.Popen([work, "--redis", url, "--queues", "bench", "--app", jobs_file,
                                 "--exit-on-complete", flag], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.wait(600)
        stats = commandstats(conn)
        done = int(conn.get(wire.Keys().stat("processed")) or 0)
        calls = sum(c for c, _ in stats.values())
        usec = sum(u for _, u in stats.values())
        series = {k: v for k, v in stats.items() if k in ("zadd", "zremrangebyscore", "zcount")}
        print(f"worker {flag}: {done} jobs, {calls / max(done, 1):.3f} commands and "
              f"{usec / max(done, 1):.2f} us of Redis time per job; series commands "
              f"{json.dumps({k: c for k, (c, _) in series.items()})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    with redis_server() as url:
        per_minute(url, args.queues, args.minutes)
        per_job(url, args.jobs)


if __name__ == "__main__":
    main()
