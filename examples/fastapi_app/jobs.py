"""The jobs the FastAPI app enqueues; a worker loads them with ``--app jobs``."""

from __future__ import annotations

import os

from redis.asyncio import Redis

from pyresqueworker import job


@job("SendWelcome", queue="mail")
async def send_welcome(email: str) -> None:
    # Stands in for sending the email: it notes the address in Redis, where the test (or
    # you, with redis-cli LRANGE example:welcomed 0 -1) can see that the job ran.
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        await redis.rpush("example:welcomed", email)
    finally:
        await redis.aclose()
