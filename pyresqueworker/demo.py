"""``pyresque-demo``: see a Python worker work Resque jobs, with nothing installed but Python.

Without ``--redis`` it serves an embedded Redis-protocol server (fakeredis's TCP server) on a
local port, so ``redis-cli`` and the Ruby client can talk to it too. With ``--redis URL`` it uses
that server instead. The worker itself never falls back to an embedded server: only this demo
does, and only when asked to by leaving ``--redis`` out.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

import click

from .client import Client
from .config import WorkerConfig
from .connection import explain_error, redact_url
from .queues import QueueSpec
from .registry import DontPerform, Registry
from .runner import WorkerError, run_worker

__all__ = ["demo_registry", "main"]

demo_registry = Registry()
_RAN_KEY = "pyresque-demo:ran"
RUBY_SCRIPT = (
    Path(__file__).resolve().parent.parent / "examples" / "ruby_client" / "resque_compat.rb"
)


def _record(text: str) -> None:
    from .registry import current_job

    job, _call = current_job()
    _DEMO_CLIENT.redis.rpush(_RAN_KEY, f"[{job.queue}] {text}")


@demo_registry.job("Greeter", queue="high")
def greet(name: str, greeting: str = "Hello") -> None:
    _record(f"Greeter: {greeting}, {name}!")


@demo_registry.job("Jobs::Archive", queue="low")
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


@demo_registry.job("AsyncFetch", queue="low")
async def fetch(url: str) -> None:
    await asyncio.sleep(0.01)
    _record(f"AsyncFetch (async def): fetched {url}")


@demo_registry.job("HelloJob", queue="default")
def hello_job(who: str, count: int, greeting: str = "hi") -> None:
    _record(f"HelloJob (ActiveJob): {greeting} {who} x{count}")


@demo_registry.job("FlakyPayment", queue="high")
def charge(amount: int) -> None:
    raise ValueError(f"card declined for amount {amount}")


_DEMO_CLIENT: Client


def _enqueue_samples(client: Client, url: str) -> list[str]:
    client.enqueue_to("high", "Greeter", "Ruby and Python", "Hello")
    client.enqueue_to("low", "Jobs::Archive", 35, "main")
    client.enqueue_to("low", "Jobs::Archive", 36, "skip-me")
    client.enqueue_to("low", "AsyncFetch", "https://example.invalid/")
    client.enqueue_to("high", "FlakyPayment", 4200)
    client.enqueue_to("high", "NoSuchClass", 1)
    client.redis.rpush(client.keys.queue("high"), b"this is not json")
    client.enqueue_active_job("HelloJob", "world", 42, queue="default", greeting="hey")
    notes = ["Python enqueued 8 jobs (one is malformed, one has no handler, one raises)."]
    ruby = shutil.which("ruby")
    if ruby and RUBY_SCRIPT.is_file():
        result = subprocess.run(
            [ruby, str(RUBY_SCRIPT), "enqueue", "high", "Greeter", '["from Ruby", "Hola"]'],
            env={"REDIS_URL": url, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        )
        notes.append("Ruby enqueued 1 job with examples/ruby_client/resque_compat.rb."
                     if result.returncode == 0 else
                     f"Ruby client could not enqueue: {result.stderr.strip()[:200]}")
    else:
        notes.append("(ruby with the redis gem not found: skipping the Ruby enqueue)")
    return notes


def _serve_embedded() -> tuple[Any, str]:
    try:
        from fakeredis import TcpFakeServer
    except ImportError:
        raise click.ClickException(
            "the embedded server needs fakeredis: pip install 'pyresqueworker[demo]'"
        ) from None
    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    threading.Thread(target=server.serve_forever, name="embedded-redis", daemon=True).start()
    port = int(server.server_address[1])
    return server, f"redis://127.0.0.1:{port}/0"


def _report(client: Client) -> None:
    click.echo("\nWhat ran:")
    for line in client.redis.lrange(_RAN_KEY, 0, -1):
        click.echo("  " + (line.decode() if isinstance(line, bytes) else line))
    click.echo(f"\nFailures in {client.keys.failed} (what resque-web shows):")
    for entry in client.failed(0, client.failed_count()):
        if entry is None:
            continue
        payload = entry["payload"]
        label = payload.get("class") if isinstance(payload, dict) else repr(payload)
        click.echo(f"  {label}: {entry['exception']}: {entry['error']}")
        for frame in entry["backtrace"][:3]:
            click.echo(f"      {frame}")
    info = client.info()
    click.echo(f"\nStats: processed={info['processed']} failed={info['failed']} "
               f"pending={info['pending']} workers={info['workers']}")


@click.command()
@click.option("--redis", "redis_url", default=None,
              help="Use this Redis instead of the embedded server.")
@click.option("--serve", is_flag=True,
              help="Afterwards keep the worker running for redis-cli / Ruby until Ctrl-C.")
def demo(redis_url: Optional[str], serve: bool) -> None:
    """Run a worker on high=2,low=1,default against sample jobs and show what happened."""
    global _DEMO_CLIENT
    server = None
    if redis_url is None:
        server, url = _serve_embedded()
        click.echo(f"Embedded Redis-protocol server (fakeredis) on {url}")
    else:
        url = redis_url
    client = _DEMO_CLIENT = Client(url=url)
    try:
        client.redis.ping()
    except Exception as exc:
        raise click.ClickException(explain_error(exc, redact_url(url))) from None
    client.redis.delete(_RAN_KEY)
    for note in _enqueue_samples(client, url):
        click.echo(note)
    if serve:
        click.echo(f"Worker keeps running; try: redis-cli -u {url} RPUSH resque:queue:high "
                   "'{\"class\":\"Greeter\",\"args\":[\"you\"]}'   (Ctrl-C stops)")
    click.echo("Running: pyresque-work --queues high=2,low=1,default=1"
               + ("" if serve else " --exit-on-complete") + "\n")
    config = WorkerConfig(queues=QueueSpec.parse("high=2,low=1,default=1"), redis_url=url,
                          interval=0.2, exit_on_complete=not serve, log_level="WARNING")
    try:
        run_worker(config, demo_registry)
    except WorkerError as exc:
        raise click.ClickException(str(exc)) from None
    _report(client)
    if server is not None:
        server.shutdown()


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of ``pyresque-demo``."""
    from .log import setup_logging

    setup_logging("WARNING")
    demo.main(args=argv if argv is not None else sys.argv[1:], prog_name="pyresque-demo")


if __name__ == "__main__":
    main()
