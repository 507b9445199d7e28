"""A FastAPI app that enqueues Resque jobs: one AsyncClient for the app's lifetime.

Run it with ``uvicorn app:app`` (from this folder) and a worker with
``pyresque-work --app jobs --queues mail``; ``REDIS_URL`` names the Redis for both.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from pyresqueworker import AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client (one connection pool) shared by every request; closed at shutdown.
    app.state.jobs = AsyncClient(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        yield
    finally:
        await app.state.jobs.close()


app = FastAPI(lifespan=lifespan)


def jobs(request: Request) -> AsyncClient:
    """The app's job client, for an endpoint's ``Jobs`` parameter."""
    client: AsyncClient = request.app.state.jobs
    return client


Jobs = Annotated[AsyncClient, Depends(jobs)]


class Signup(BaseModel):
    email: str


@app.post("/signups", status_code=202)
async def signup(body: Signup, client: Jobs) -> dict[str, str]:
    # Ruby would write the same: Resque.enqueue_to("mail", "SendWelcome", email)
    await client.enqueue("SendWelcome", body.email, queue="mail")
    return {"queued": body.email}
