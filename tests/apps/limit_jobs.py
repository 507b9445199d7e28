"""Jobs for the timeout, isolation and recycling tests."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import redis

from pyresqueworker import job


@job("Spin")
def spin(seconds: float) -> None:
    """Busy Python code: a soft (thread) timeout can interrupt it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@job("Jobs::CappedSpin", timeout=0.3)
def capped_spin(seconds: float) -> None:
    """Busy Python code with a timeout of its own."""
    spin(seconds)


@job("Nap")
def nap(seconds: float) -> None:
    """One long C call: only a hard (forked child) timeout can stop it early."""
    time.sleep(seconds)


@job("SlowAsync", timeout=0.3)
async def slow_async(seconds: float) -> None:
    await asyncio.sleep(seconds)


@job("SelfKill")
def self_kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@job("Pid")
def record_pid(tag: str) -> None:
    """Records which process ran the job (the worker, or its forked child)."""
    redis.Redis.from_url(os.environ["REDIS_URL"]).rpush(f"test:pid:{tag}", os.getpid())
