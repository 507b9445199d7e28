"""examples/fastapi_app: an endpoint enqueues with the app's AsyncClient (made and closed by
the app's lifespan), and a real ``pyresque-work`` runs the job.

httpx's ASGI transport does not run the lifespan, so the test enters
``app.router.lifespan_context`` itself, as a server would around the requests.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
from types import ModuleType
from typing import Any

import pytest
import redis
from worker_helpers import ROOT, command, worker_env

from pyresqueworker import AsyncClient

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

EXAMPLE = ROOT / "examples" / "fastapi_app"


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_example_app", EXAMPLE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def sign_up(app: Any, emails: list[str]) -> list[tuple[int, Any]]:
    """Start the app (its lifespan), POST each email, shut it down; the responses."""
    answers = []
    async with app.router.lifespan_context(app):
        assert isinstance(app.state.jobs, AsyncClient)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as http:
            for email in emails:
                response = await http.post("/signups", json={"email": email})
                answers.append((response.status_code, response.json()))
    return answers


def test_an_endpoint_enqueues_and_a_worker_runs_the_job(
        redis_url: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)  # read by the lifespan
    app = load_app().app

    answers = asyncio.run(sign_up(app, ["ada@example.com", "grace@example.com"]))

    assert answers == [(202, {"queued": "ada@example.com"}),
                       (202, {"queued": "grace@example.com"})]
    assert r.llen("resque:queue:mail") == 2
    worker = subprocess.run(
        [*command(), "--app", str(EXAMPLE / "jobs.py"), "--queues", "mail",
         "--exit-on-complete"],
        env=worker_env(redis_url), cwd=str(EXAMPLE), capture_output=True, text=True,
        timeout=120)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert r.lrange("example:welcomed", 0, -1) == [b"ada@example.com", b"grace@example.com"]
    assert r.llen("resque:queue:mail") == 0 and r.llen("resque:failed") == 0

