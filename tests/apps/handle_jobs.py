"""Jobs defined as typed handles, for tests/test_job_handles.py (``--app handle_jobs``).

Each job appends ``[name, *args]`` as JSON to ``test:handles`` on the Redis named by
``REDIS_URL``, so the test sees from outside that a worker ran what a handle enqueued.
"""

from __future__ import annotations

import asyncio
import json
import os

import redis

from pyresqueworker import default_registry, job


def _note(*values: object) -> None:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        client.rpush("test:handles", json.dumps(list(values)))
    finally:
        client.close()


@job("Handles::Add", queue="handles")
def add(a: int, b: int = 10) -> int:
    """Adds; the default of ``b`` is filled in when only a later argument is named."""
    _note("add", a, b)
    return a + b


@job("Handles::AsyncAdd", queue="handles")
async def async_add(a: int, b: int) -> int:
    """An ``async def`` job behind a handle: the worker must still await it."""
    await asyncio.sleep(0)
    _note("async_add", a, b)
    return a + b


@job("Handles::Mail", queue="handles")
class Mail:
    """A class job: ``@job`` leaves the class as it is; its handle comes from the registry."""

    def perform(self, to: str, subject: str = "hello") -> None:
        _note("mail", to, subject)


mail = default_registry.handle_for(Mail)
