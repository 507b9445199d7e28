"""The jobs ``pyresque-demo`` runs, as an app module: ``pyresque-work --app
pyresqueworker.cli.demo_jobs`` runs them too (the demo prints that command).

They register in the default registry, as the handlers of any ``--app`` module do. Only the
demo and such a worker import this module, so no one else's registry gets them.
"""

from __future__ import annotations

import asyncio
from typing import Optional

import click

from ..client._client import Client
from ..jobs.registry import DontPerform, current_job, job
from ..protocol.safe_text import escape_controls

__all__ = ["record_to"]

_recorder: Optional[Client] = None


def record_to(client: Optional[Client]) -> None:
    """Where the jobs say what they did: in the demo, a list in ``client``'s namespace that it
    reports from at the end; with ``None`` (a worker of your own), that worker's output."""
    global _recorder
    _recorder = client


def _record(text: str) -> None:
    running, _call = current_job()
    line = f"[{running.queue}] {text}"
    recorder = _recorder
    if recorder is None:
        click.echo(escape_controls(line))  # the arguments came from Redis: any bytes at all
    else:
        recorder.redis.rpush(recorder.keys.own("demo:ran"), line)


@job("Greeter", queue="high")
def greet(name: str, greeting: str = "Hello") -> None:
    _record(f"Greeter: {greeting}, {name}!")


@job("Jobs::Archive", queue="low")
class Archive:
    """A class job with Resque-style hooks."""

    @staticmethod
    def before_perform_check(repo_id: int, branch: str) -> None:
        if branch == "skip-me":
            raise DontPerform()

    @staticmethod
    def perform(repo_id: int, branch: str) -> None:
        _record(f"Jobs::Archive: archived repo {repo_id} at {branch}")

    @staticmethod
    def after_perform_log(repo_id: int, branch: str) -> None:
        _record(f"Jobs::Archive: after_perform hook ran for {repo_id}")


@job("AsyncFetch", queue="low")
async def fetch(url: str) -> None:
    await asyncio.sleep(0.01)
    _record(f"AsyncFetch (async def): fetched {url}")


@job("HelloJob", queue="default")
def hello_job(who: str, count: int, greeting: str = "hi") -> None:
    _record(f"HelloJob (ActiveJob): {greeting} {who} x{count}")


@job("FlakyPayment", queue="high")
def charge(amount: int) -> None:
    raise ValueError(f"card declined for amount {amount}")
