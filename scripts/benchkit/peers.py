"""The peer workers of ``scripts/bench.py``: ``python peers.py rq|dramatiq|arq --redis URL``.

Each runs the jobs of ``benchkit.jobs`` on the ``bench`` queue until it is empty (``--burst``) or
SIGTERM. Peers are imported only here, so none is required by the rest of the bench.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

# scripts/, so benchkit.jobs (RQ's job paths name it) imports when this file runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit.jobs import (
    PYTHON_PEERS,
    QUEUE,
    _dramatiq_broker,
    arq_mark,
    arq_noop,
    arq_payload,
    arq_sleep,
    mark,
    noop,
    payload,
    sleep,
)

__all__ = ["main"]


def _run_rq(url: str, burst: bool) -> None:
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(url)
    worker = SimpleWorker([Queue(QUEUE, connection=conn)], connection=conn,
                          name=f"bench-{uuid.uuid4().hex[:8]}")
    worker.work(burst=burst, logging_level="WARNING")


def _run_dramatiq(url: str, threads: int | None) -> None:
    import dramatiq
    from dramatiq import Worker

    broker = _dramatiq_broker(url)
    dramatiq.set_broker(broker)
    jobs: list[Any] = [noop, sleep, mark, payload]
    for fn in jobs:
        dramatiq.actor(actor_name=f"bench_{fn.__name__}", queue_name=QUEUE, broker=broker)(fn)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker = Worker(broker) if threads is None else Worker(broker, worker_threads=threads)
    worker.start()
    stop.wait()
    worker.stop()
    broker.close()


def _run_arq(url: str, burst: bool, max_jobs: int | None, poll: float | None) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    functions = [func(arq_noop, name="noop"), func(arq_sleep, name="sleep"),
                 func(arq_mark, name="mark"), func(arq_payload, name="payload")]
    # Only what the workload sets is passed: everything else is arq's default.
    options: dict[str, Any] = {} if poll is None else {"poll_delay": poll}
    if max_jobs is not None:
        options["max_jobs"] = max_jobs
    worker = Worker(functions, redis_settings=RedisSettings.from_dsn(url), burst=burst,
                    **options)
    worker.run()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one peer worker on the ``bench`` queue until it is empty (burst) or SIGTERM."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("framework", choices=PYTHON_PEERS)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--poll", type=float, default=None, help="arq poll_delay (s)")
    args = parser.parse_args(argv)
    os.environ["BENCH_REDIS_URL"] = args.redis
    # Quiet like our worker's --log-level warning: per-job INFO lines would be measured too.
    logging.basicConfig(level=logging.WARNING)
    if args.framework == "rq":
        _run_rq(args.redis, args.burst)
    elif args.framework == "dramatiq":
        _run_dramatiq(args.redis, args.concurrency)
    else:
        _run_arq(args.redis, args.burst, args.concurrency, args.poll)


if __name__ == "__main__":
    main()
