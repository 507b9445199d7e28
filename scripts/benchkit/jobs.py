"""The benchmark's jobs and per-framework adapters, for ``scripts/bench.py``.

Every framework runs the same jobs: ``noop`` (does nothing), ``payload`` (one string
argument, ignored), ``sleep`` (``sleep_s`` seconds) and ``mark`` (appends ``time.time()`` to
the Redis list ``bench:<tag>``; ``end`` marks are stamped after their sleep, the others before).
The bench brackets a workload with a ``start`` and an ``end`` mark, so every framework is timed
the same way — from the first job starting to the last one finishing — without worker
start-up, and without any per-job Redis work beyond what the framework itself does. ``asleep``
and ``amark`` are the ``async def`` versions, for our worker's ``--execution asyncio``.
``endmax`` (ours only, the ``workflow`` workload) keeps the latest ``time.time()`` at which
any such job ended in the sorted set ``bench:lastend``.
Sidekiq (Ruby) lives in ``benchkit.sidekiq``.

The peer workers run from ``peers.py`` (``python scripts/benchkit/peers.py rq|dramatiq|arq
--redis URL``). Our worker loads this module with ``--app`` and ``BENCH_FRAMEWORK=pyresque``
to register the jobs. Peers are imported only inside the functions that need them, so none
is required.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

__all__ = [
    "FRAMEWORKS", "LAST_END", "OURS_ENTRY", "PEERS", "PYTHON_PEERS", "Item", "Pusher", "available",
    "enqueue", "enqueue_rate", "ours_class", "worker_argv", "worker_env",
]

QUEUE = "bench"
PYTHON_PEERS = ("rq", "dramatiq", "arq")
PEERS = (*PYTHON_PEERS, "sidekiq")
FRAMEWORKS = ("pyresque", *PEERS)
OURS_ENTRY = "pyresqueworker.cli.work:work_main"  # the pyresque-work console script
# (job kind, args): ("noop", ()), ("sleep", (seconds,)), ("mark", (tag, sleep seconds)).
Item = tuple[str, tuple[Any, ...]]

_OURS_CLASS = {"noop": "BenchNoop", "sleep": "BenchSleep", "mark": "BenchMark",
               "payload": "BenchPayload", "asleep": "BenchAsyncSleep", "amark": "BenchAsyncMark",
               "endmax": "BenchEndMax"}
LAST_END = "bench:lastend"  # endmax's sorted set: one member, "end", scored by the latest end
_local = threading.local()


# -- the jobs (synchronous frameworks) -------------------------------------------------------

def _conn() -> redis.Redis:
    # One connection per worker thread, opened lazily: marks are rare, and opening it after the
    # timestamp keeps connection set-up out of the measured time.
    conn = getattr(_local, "conn", None)
    if conn is None:
        # Named bench-*: the connection counts of the bench leave it out.
        conn = _local.conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"],
                                                  client_name="bench-mark")
    return conn


def noop() -> None:
    """The no-op job."""


def payload(data: str) -> None:
    """A no-op job that carries ``data`` (the payload-size drain)."""


def sleep(seconds: float) -> None:
    """An I/O-bound job: blocks without using the CPU."""
    time.sleep(seconds)


def mark(tag: str, sleep_s: float) -> None:
    """Stamp ``time.time()`` into ``bench:<tag>`` (after the sleep for ``end``)."""
    when = time.time()
    if sleep_s:
        time.sleep(sleep_s)
        if tag == "end":
            when = time.time()
    _conn().rpush(f"bench:{tag}", repr(when))


def endmax() -> None:
    """A no-op job that raises ``bench:lastend``'s score to its end time (``ZADD GT``: the
    latest end of all such jobs stays, whichever slot stamps last)."""
    when = time.time()
    _conn().zadd(LAST_END, {"end": when}, gt=True)


async def asleep(seconds: float) -> None:
    """The I/O-bound job as a coroutine (``await asyncio.sleep``)."""
    await asyncio.sleep(seconds)


async def amark(tag: str, sleep_s: float) -> None:
    """``mark`` as a coroutine; the stamp itself is one short blocking RPUSH."""
    when = time.time()
    if sleep_s:
        await asyncio.sleep(sleep_s)
        if tag == "end":
            when = time.time()
    _conn().rpush(f"bench:{tag}", repr(when))


# -- the jobs (arq: coroutines) ----------------------------------------------------------------

async def arq_noop(ctx: dict[str, Any]) -> None:
    """arq's no-op job."""


async def arq_payload(ctx: dict[str, Any], data: str) -> None:
    """arq's payload job."""


async def arq_sleep(ctx: dict[str, Any], seconds: float) -> None:
    """arq's I/O-bound job (an asyncio sleep, as arq users would write it)."""
    await asyncio.sleep(seconds)


async def arq_mark(ctx: dict[str, Any], tag: str, sleep_s: float) -> None:
    """arq's mark job, on arq's own connection."""
    when = time.time()
    if sleep_s:
        await asyncio.sleep(sleep_s)
        if tag == "end":
            when = time.time()
    await ctx["redis"].rpush(f"bench:{tag}", repr(when))


def _register_ours() -> None:
    import pyresqueworker
    from pyresqueworker import job

    # The checkout whose package the bench started this worker with (--baseline runs two).
    want = os.environ.get("BENCH_PACKAGE_ROOT")
    have = os.path.dirname(os.path.dirname(os.path.realpath(pyresqueworker.__file__)))
    if want and have != os.path.realpath(want):
        raise RuntimeError(f"this worker imported the pyresqueworker of {have}, not of {want}")

    for kind, fn in (("noop", noop), ("sleep", sleep), ("mark", mark), ("payload", payload),
                     ("asleep", asleep), ("amark", amark), ("endmax", endmax)):
        job(_OURS_CLASS[kind])(fn)


if os.environ.get("BENCH_FRAMEWORK") == "pyresque":
    _register_ours()


# -- adapters used by the bench process ----------------------------------------------------------

def ours_class(kind: str) -> str:
    """The class name our worker runs a job of ``kind`` as ("noop": "BenchNoop")."""
    return _OURS_CLASS[kind]


def available(framework: str) -> str | None:
    """None if ``framework`` can be benchmarked here, else why not."""
    if framework == "sidekiq":
        from benchkit import sidekiq as bench_sidekiq

        return bench_sidekiq.available()
    modules = {"pyresque": ["pyresqueworker"], "rq": ["rq"], "arq": ["arq"],
               "dramatiq": ["dramatiq", "redis"]}[framework]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"not installed ({', '.join(missing)}): pip install -e '.[bench]'"
    return None


def worker_argv(framework: str, url: str, *, concurrency: int | None = None, processes: int = 1,
                burst: bool = True, poll: float | None = None, extra: tuple[str, ...] = (),
                queues: Sequence[str] = (), log_level: str = "warning",
                entry: str = OURS_ENTRY) -> list[str]:
    """The command that runs one worker of ``framework`` on the ``bench`` queue.

    ``concurrency`` None keeps the framework's default (ours 1 slot, dramatiq 8 threads, arq
    10 jobs, Sidekiq its default; RQ's SimpleWorker always runs one job at a time).
    ``queues``, ``log_level`` and ``entry`` (the console script's "module:function") are ours
    only.
    """
    here = os.path.abspath(__file__)
    peers = os.path.join(os.path.dirname(here), "peers.py")
    if framework == "sidekiq":
        from benchkit import sidekiq as bench_sidekiq

        return bench_sidekiq.worker_argv(concurrency)
    if framework == "pyresque":
        # Exactly what the pyresque-work console script runs, with this interpreter.
        module, _, function = entry.partition(":")
        script = f"import sys; from {module} import {function}; sys.exit({function}())"
        argv = [sys.executable, "-c", script, "--queues", ",".join(queues or [QUEUE]),
                "--app", here, "--redis", url, "--concurrency", str(concurrency or 1),
                "--processes", str(processes), "--log-level", log_level, *extra]
        return [*argv, "--exit-on-complete"] if burst else argv
    argv = [sys.executable, peers, framework, "--redis", url]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if burst:
        argv.append("--burst")
    if poll is not None:
        argv += ["--poll", str(poll)]
    return argv


def worker_env(framework: str, url: str) -> dict[str, str]:
    """Environment a worker of ``framework`` needs besides ``BENCH_REDIS_URL``."""
    if framework == "sidekiq":
        from benchkit import sidekiq as bench_sidekiq

        return bench_sidekiq.worker_env(url)
    return {}


def enqueue(framework: str, url: str, items: Sequence[Item]) -> None:
    """Queue ``items`` in order, each framework with its own client API."""
    # Batches of at most ~16 MB: a 1 MB payload goes 16 jobs to a pipeline, not 1,000.
    biggest = max((len(a) for _, args in items for a in args if isinstance(a, str)), default=0)
    batch = max(1, min(1000, 16_000_000 // max(biggest, 1)))
    if framework == "sidekiq":
        from benchkit import sidekiq as bench_sidekiq

        bench_sidekiq.enqueue(url, items)
    elif framework == "pyresque":
        from pyresqueworker import Client

        client = Client(url=url)
        try:
            client.enqueue_many(QUEUE, [(_OURS_CLASS[kind], args) for kind, args in items],
                                batch=batch)
        finally:
            client.close()
    elif framework == "rq":
        from rq import Queue

        queue = Queue(QUEUE, connection=redis.Redis.from_url(url))
        for start in range(0, len(items), batch):
            queue.enqueue_many([Queue.prepare_data(f"benchkit.jobs.{kind}", args)
                                for kind, args in items[start:start + batch]])
    elif framework == "dramatiq":
        broker = _dramatiq_broker(url)
        for kind, args in items:
            broker.enqueue(_dramatiq_message(kind, args))
        broker.close()
    else:
        asyncio.run(_arq_enqueue(url, items))


def _dramatiq_broker(url: str) -> Any:
    from dramatiq.brokers.redis import RedisBroker

    factory: Any = RedisBroker  # untyped constructor
    return factory(url=url)


def _dramatiq_message(kind: str, args: tuple[Any, ...]) -> Any:
    import dramatiq

    return dramatiq.Message(queue_name=QUEUE, actor_name=f"bench_{kind}", args=args, kwargs={},
                            options={})


async def _arq_enqueue(url: str, items: Sequence[Item]) -> None:
    from arq.connections import RedisSettings, create_pool

    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        if len(items) < 3:
            for item in items:
                await pool.enqueue_job(*_flat(item))
            return
        # arq takes jobs in score (enqueue millisecond) order, so the first and last items get
        # a millisecond of their own to stay first and last; the middle goes in concurrently.
        await pool.enqueue_job(*_flat(items[0]))
        await asyncio.sleep(0.002)
        middle = items[1:-1]
        for start in range(0, len(middle), 50):
            await asyncio.gather(*(pool.enqueue_job(*_flat(item))
                                   for item in middle[start:start + 50]))
        await asyncio.sleep(0.002)
        await pool.enqueue_job(*_flat(items[-1]))
    finally:
        await pool.aclose()


def _flat(item: Item) -> tuple[Any, ...]:
    return (item[0], *item[1])


def enqueue_rate(framework: str, url: str, n: int, bulk: bool) -> float:
    """Seconds to enqueue ``n`` no-op jobs, one call each or in bulk (client ready, warmed)."""
    if framework == "pyresque":
        from pyresqueworker import Client

        client = Client(url=url)
        client.enqueue_to(QUEUE, "BenchNoop")
        started = time.perf_counter()
        if bulk:
            client.enqueue_many(QUEUE, [("BenchNoop", ())] * n)
        else:
            for _ in range(n):
                client.enqueue_to(QUEUE, "BenchNoop")
        elapsed = time.perf_counter() - started
        client.close()
        return elapsed
    if framework == "rq":
        from rq import Queue

        queue = Queue(QUEUE, connection=redis.Redis.from_url(url))
        queue.enqueue("benchkit.jobs.noop")
        started = time.perf_counter()
        if bulk:
            for start in range(0, n, 1000):
                queue.enqueue_many([Queue.prepare_data("benchkit.jobs.noop")
                                    for _ in range(min(1000, n - start))])
        else:
            for _ in range(n):
                queue.enqueue("benchkit.jobs.noop")
        return time.perf_counter() - started
    if framework == "dramatiq":
        broker = _dramatiq_broker(url)
        broker.enqueue(_dramatiq_message("noop", ()))
        started = time.perf_counter()
        for _ in range(n):
            broker.enqueue(_dramatiq_message("noop", ()))
        elapsed = time.perf_counter() - started
        broker.close()
        return elapsed
    return asyncio.run(_arq_rate(url, n))


async def _arq_rate(url: str, n: int) -> float:
    from arq.connections import RedisSettings, create_pool

    pool = await create_pool(RedisSettings.from_dsn(url))
    await pool.enqueue_job("noop")
    started = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("noop")
    elapsed = time.perf_counter() - started
    await pool.aclose()
    return elapsed


class Pusher:
    """Enqueues one job at a time over a connection kept open (for pick-up latency)."""

    def __init__(self, framework: str, url: str) -> None:
        self.framework = framework
        self._loop: asyncio.AbstractEventLoop | None = None
        if framework == "pyresque":
            from pyresqueworker import Client

            self._client: Any = Client(url=url)
        elif framework == "rq":
            from rq import Queue

            self._client = Queue(QUEUE, connection=redis.Redis.from_url(url))
        elif framework == "dramatiq":
            self._client = _dramatiq_broker(url)
        else:
            from arq.connections import RedisSettings, create_pool

            self._loop = asyncio.new_event_loop()
            self._client = self._loop.run_until_complete(create_pool(RedisSettings.from_dsn(url)))

    def push(self, kind: str, *args: Any) -> None:
        """Enqueue one job; returns once the framework's enqueue call has returned."""
        if self.framework == "pyresque":
            self._client.enqueue_to(QUEUE, _OURS_CLASS[kind], *args)
        elif self.framework == "rq":
            self._client.enqueue(f"benchkit.jobs.{kind}", *args)
        elif self.framework == "dramatiq":
            self._client.enqueue(_dramatiq_message(kind, args))
        else:
            assert self._loop is not None
            self._loop.run_until_complete(self._client.enqueue_job(kind, *args))

    def close(self) -> None:
        """Close the connection (and arq's event loop)."""
        if self._loop is not None:
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()
        elif self.framework in ("pyresque", "dramatiq"):
            self._client.close()
