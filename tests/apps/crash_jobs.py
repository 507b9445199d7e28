"""Jobs that kill the process running them, for the supervisor tests (``--app crash_jobs``)."""

from __future__ import annotations

import ctypes
import os

import redis

from pyresqueworker import job


@job("Segfault")
def segfault(tag: str) -> None:
    """Records that it started, then reads address 0: SIGSEGV, as a broken C extension does."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.rpush("test:segfaults", f"{tag}:{os.getpid()}")
    client.close()
    ctypes.string_at(0)
