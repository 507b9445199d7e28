"""``pyresque-demo``: see a Python worker work Resque jobs, with nothing installed but Python.

Without ``--redis`` it serves an embedded Redis-protocol server (fakeredis's TCP server) on a
local port, so ``redis-cli`` and the Ruby client can talk to it too. With ``--redis URL`` it uses
that server instead, in a namespace of its own (``pyresque-demo:``) that it empties at the start
of each run, so it never mixes with real Resque data and each run shows only its own jobs. The
worker itself never falls back to an embedded server: only this demo does, and only when asked
to by leaving ``--redis`` out.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import shutil
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

import click

from ..client._client import Client
from ..jobs.registry import DontPerform, Registry
from ..protocol.connection import explain_error, redact_url
from ..protocol.queues import QueueSpec
from ..worker.config import WorkerConfig
from ..worker.runner import WorkerError, run_worker

__all__ = ["demo_registry", "main"]

demo_registry = Registry()
# Its own namespace on a real Redis: the demo empties it on every run (see _reset_namespace).
DEMO_NAMESPACE = "pyresque-demo:"
RUBY_SCRIPT_NAME = "resque_compat.rb"
# A source checkout has the script in examples/; the wheel carries that same file as package
# data under pyresqueworker/ruby_client/ (setup.cfg maps the directory there).
_CHECKOUT_RUBY_SCRIPT = (
    Path(__file__).resolve().parents[2] / "examples" / "ruby_client" / RUBY_SCRIPT_NAME
)


def _record(text: str) -> None:
    from ..jobs.registry import current_job

    job, _call = current_job()
    _DEMO_CLIENT.redis.rpush(_DEMO_CLIENT.keys.own("demo:ran"), f"[{job.queue}] {text}")


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


def _ruby_script(stack: ExitStack) -> Optional[Path]:
    """The Ruby client the demo enqueues with, as a file (kept while ``stack`` is open)."""
    packaged = importlib.resources.files("pyresqueworker") / "ruby_client"
    resource = packaged / RUBY_SCRIPT_NAME
    if resource.is_file():
        return stack.enter_context(importlib.resources.as_file(resource))
    return _CHECKOUT_RUBY_SCRIPT if _CHECKOUT_RUBY_SCRIPT.is_file() else None


def _enqueue_with_ruby(client: Client, url: str) -> str:
    """Enqueue one job through the Ruby client; say what happened, or precisely what is missing."""
    ruby = shutil.which("ruby")
    if ruby is None:
        return ("(Ruby enqueue skipped: no `ruby` on PATH; install Ruby and its redis gem, "
                "e.g. Debian's ruby and ruby-redis)")
    with ExitStack() as stack:
        script = _ruby_script(stack)
        if script is None:
            return (f"(Ruby enqueue skipped: {RUBY_SCRIPT_NAME} is not in this installation of "
                    "pyresqueworker; reinstall it)")
        result = subprocess.run(
            [ruby, str(script), "enqueue", "high", "Greeter", '["from Ruby", "Hola"]'],
            env={**os.environ, "REDIS_URL": url, "RESQUE_NAMESPACE": client.keys.ns},
            capture_output=True, text=True,
        )
    if result.returncode == 0:
        return f"Ruby enqueued 1 job with {RUBY_SCRIPT_NAME} (Resque's side of the protocol)."
    if "cannot load such file -- redis" in result.stderr:
        return (f"(Ruby enqueue skipped: {ruby} is there but its redis gem is not; "
                "gem install redis, or Debian's ruby-redis)")
    return f"Ruby client could not enqueue: {result.stderr.strip()[:200]}"


def _enqueue_samples(client: Client, url: str) -> list[str]:
    client.enqueue_to("high", "Greeter", "Ruby and Python", "Hello")
    client.enqueue_to("low", "Jobs::Archive", 35, "main")
    client.enqueue_to("low", "Jobs::Archive", 36, "skip-me")
    client.enqueue_to("low", "AsyncFetch", "https://example.invalid/")
    client.enqueue_to("high", "FlakyPayment", 4200)
    client.enqueue_to("high", "NoSuchClass", 1)
    client.redis.rpush(client.keys.queue("high"), b"this is not json")
    client.enqueue_active_job("HelloJob", "world", 42, queue="default", greeting="hey")
    return ["Python enqueued 8 jobs (one is malformed, one has no handler, one raises).",
            _enqueue_with_ruby(client, url)]


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis SCAN MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _reset_namespace(client: Client) -> None:
    """Delete every key of the demo's namespace, so a run shows its own jobs only.

    A namespace holding keys no demo wrote (``--namespace resque:`` on a Redis with real jobs)
    is refused rather than emptied: the demo must never delete someone's queues.
    """
    marker = client.keys.own("demo")
    keys = list(client.redis.scan_iter(match=_glob_escape(client.keys.ns) + "*", count=1000))
    if keys and client.keys.ns != DEMO_NAMESPACE and not client.redis.exists(marker):
        raise click.ClickException(
            f"namespace {client.keys.ns!r} already holds {len(keys)} keys the demo did not "
            "write, and the demo empties its namespace on every run: pass a --namespace of "
            f"its own (the default with --redis is {DEMO_NAMESPACE!r})")
    for start in range(0, len(keys), 1000):
        client.redis.delete(*keys[start:start + 1000])
    client.redis.set(marker, "keys under this namespace are pyresque-demo's, emptied each run")


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
    for line in client.redis.lrange(client.keys.own("demo:ran"), 0, -1):
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
              help="Use this Redis instead of the embedded server. The demo then works in "
                   f"the namespace {DEMO_NAMESPACE!r}, never in Resque's 'resque:', and "
                   "deletes that namespace's keys at the start of each run.")
@click.option("--namespace", default=None,
              help=f"Key prefix (default: {DEMO_NAMESPACE!r} with --redis, 'resque:' on the "
                   "embedded server). Its keys are deleted at the start of each run; a "
                   "namespace holding keys the demo did not write is refused.")
@click.option("--serve", is_flag=True,
              help="Afterwards keep the worker running for redis-cli / Ruby until Ctrl-C.")
def demo(redis_url: Optional[str], namespace: Optional[str], serve: bool) -> None:
    """Run a worker on high=2,low=1,default against sample jobs and show what happened."""
    global _DEMO_CLIENT
    server = None
    if redis_url is None:
        server, url = _serve_embedded()
        click.echo(f"Embedded Redis-protocol server (fakeredis) on {url}")
    else:
        url = redis_url
    if namespace is None:
        namespace = "resque:" if server is not None else DEMO_NAMESPACE
    elif not namespace:
        raise click.BadParameter("must not be empty", param_hint="--namespace")
    try:
        client = _DEMO_CLIENT = Client(url=url, namespace=namespace)
        client.redis.ping()
        _reset_namespace(client)
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(explain_error(exc, redact_url(url))) from None
    if server is None:
        click.echo(f"Using namespace {client.keys.ns!r} on {redact_url(url)} "
                   "(emptied at the start of each run)")
    for note in _enqueue_samples(client, url):
        click.echo(note)
    if serve:
        click.echo(f"Worker keeps running; try: redis-cli -u {url} RPUSH "
                   f"{client.keys.queue('high')} "
                   "'{\"class\":\"Greeter\",\"args\":[\"you\"]}'   (Ctrl-C stops)")
    click.echo(f"Running: pyresque-work --namespace {client.keys.ns} "
               "--queues high=2,low=1,default=1" + ("" if serve else " --exit-on-complete") + "\n")
    config = WorkerConfig(queues=QueueSpec.parse("high=2,low=1,default=1"), redis_url=url,
                          namespace=client.keys.ns, interval=0.2, exit_on_complete=not serve,
                          log_level="WARNING")
    try:
        run_worker(config, demo_registry)
    except WorkerError as exc:
        raise click.ClickException(str(exc)) from None
    _report(client)
    if server is not None:
        server.shutdown()


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of ``pyresque-demo``."""
    from ..log import setup_logging

    setup_logging("WARNING")
    demo.main(args=argv if argv is not None else sys.argv[1:], prog_name="pyresque-demo")


if __name__ == "__main__":
    main()
