"""``pyresque-demo``: see a Python worker work Resque jobs, with nothing installed but Python.

Without ``--redis`` it serves an embedded Redis-protocol server (fakeredis's TCP server) on a
local port, so ``redis-cli`` and the Ruby client can talk to it too. With ``--redis URL`` it uses
that server instead, in a namespace of its own (``pyresque-demo:``) that it empties at the start
of each run, so it never mixes with real Resque data and each run shows only its own jobs. The
worker itself never falls back to an embedded server: only this demo does, and only when asked
to by leaving ``--redis`` out.
"""

from __future__ import annotations

import importlib.resources
import os
import shlex
import shutil
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import click
import redis

from ..client._client import Client
from ..client.history import History, HistoryRecord
from ..jobs.activejob import JOB_WRAPPER, wrapped_job_data
from ..protocol import wire
from ..protocol.connection import explain_error, redact_url
from ..protocol.queues import QueueSpec
from ..protocol.safe_text import escape_controls
from ..worker.config import WorkerConfig
from ..worker.runner import WorkerError, run_worker

__all__ = ["main"]

# Its own namespace on a real Redis: the demo empties it on every run (see _reset_namespace).
DEMO_NAMESPACE = "pyresque-demo:"
# The module with the demo's jobs, which a worker started by hand loads with --app.
DEMO_APP = "pyresqueworker.cli.demo_jobs"
DEMO_QUEUES = "high=2,low=1,default=1"
# While serving, how often the demo looks for jobs the worker finished, and how many it reads.
FOLLOW_EVERY = 0.2
FOLLOW_BATCH = 100
RUBY_SCRIPT_NAME = "resque_compat.rb"
# A source checkout has the script in examples/; the wheel carries that same file as package
# data under pyresqueworker/ruby_client/ (a symbolic link to examples/ruby_client).
_CHECKOUT_RUBY_SCRIPT = (
    Path(__file__).resolve().parents[2] / "examples" / "ruby_client" / RUBY_SCRIPT_NAME
)


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
    # Every line but the headings holds text from Redis (a job pushed with redis-cli can
    # carry any bytes): its control characters are written out, never sent to the terminal.
    click.echo("\nWhat ran:")
    for line in client.redis.lrange(client.keys.own("demo:ran"), 0, -1):
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        click.echo("  " + escape_controls(text))
    click.echo(f"\nFailures in {client.keys.failed} (what resque-web shows):")
    for entry in client.failed(0, client.failed_count()):
        if entry is None:
            continue
        payload = entry["payload"]
        label = payload.get("class") if isinstance(payload, dict) else repr(payload)
        click.echo(escape_controls(f"  {label}: {entry['exception']}: {entry['error']}"))
        for frame in entry["backtrace"][:3]:
            click.echo(escape_controls(f"      {frame}"))
    info = client.info()
    click.echo(f"\nStats: processed={info['processed']} failed={info['failed']} "
               f"pending={info['pending']} workers={info['workers']}")


def _has_password(url: str) -> bool:
    return "@" in urlsplit(url).netloc


def _url_for_shell(url: str) -> str:
    """``url`` in a command to paste; ``"$REDIS_URL"`` when it holds credentials, which the
    demo does not print (it says to set the variable instead)."""
    return '"$REDIS_URL"' if _has_password(url) else shlex.quote(url)


def _worker_command(url: str, namespace: str, serve: bool) -> str:
    """The ``pyresque-work`` command for the worker the demo runs, ready to paste."""
    words = ["--namespace", namespace, "--queues", DEMO_QUEUES]
    if not serve:
        words.append("--exit-on-complete")
    return (f"pyresque-work --app {DEMO_APP} --redis {_url_for_shell(url)} "
            + " ".join(shlex.quote(word) for word in words))


def _say_commands(client: Client, url: str, serve: bool, embedded: bool) -> None:
    """The commands to try by hand: a redis-cli push while serving, and the worker's."""
    if _has_password(url):
        click.echo("(The commands below read the Redis URL, which holds a password, from "
                   "$REDIS_URL: set it first.)")
    if serve:
        job = shlex.quote('{"class":"Greeter","args":["you"]}')
        click.echo(f"Worker keeps running; try: redis-cli -u {_url_for_shell(url)} RPUSH "
                   f"{shlex.quote(client.keys.queue('high'))} {job}   (Ctrl-C stops)")
    click.echo(f"Running: {_worker_command(url, client.keys.ns, serve)}")
    if embedded and not serve:
        click.echo("(The embedded server stops with the demo: to run that command yourself, "
                   "start the demo with --serve or --redis.)")
    click.echo()


def _job_line(record: HistoryRecord) -> str:
    """A finished job as the demo prints it: ``[high] Greeter("you") -> success (0.3ms)``."""
    args: Any = record.args
    data = wrapped_job_data({"class": JOB_WRAPPER, "args": args})
    if data is not None and data.get("job_class") == record.class_name:
        args = data.get("arguments")  # ActiveJob's own arguments, not the wrapper's job_data
    call = record.class_name or "(not a job)"
    if record.class_name and isinstance(args, list):
        call += f"({_cut(wire.dumps(args)[1:-1])})"
    outcome = record.outcome + (f": {_cut(record.error)}" if record.error else "")
    # Class, arguments and error came from Redis: any bytes at all.
    return escape_controls(f"  [{record.queue}] {call} -> {outcome} "
                           f"({record.duration_ms:.1f}ms)")


def _cut(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _follow(client: Client, stop: threading.Event) -> None:
    """While serving, print each job the worker finishes, from the worker's job history (which
    has every job: those without a handler and those that are not even JSON too)."""
    store = History(client.redis, client.keys)
    shown: set[tuple[float, str]] = set()
    while True:
        stopping = stop.wait(FOLLOW_EVERY)
        try:
            records = store.recent(FOLLOW_BATCH)
        except redis.RedisError:  # Redis away for a moment: the next look catches up
            records = None
        if records is not None:
            for record in reversed(records):  # oldest first
                if (record.finished_at, record.worker) not in shown:
                    click.echo(_job_line(record))
            # Only these, the newest, can come back in the next look.
            shown = {(record.finished_at, record.worker) for record in records}
        if stopping:
            return


def _work(client: Client, url: str, serve: bool) -> None:
    """Run the worker of :func:`_worker_command` here, until the queues are empty (or, while
    serving, until Ctrl-C), printing each job as it finishes while serving."""
    from . import demo_jobs  # not at import: its handlers go into the default registry

    demo_jobs.record_to(client)
    config = WorkerConfig(queues=QueueSpec.parse(DEMO_QUEUES), redis_url=url,
                          namespace=client.keys.ns, apps=[DEMO_APP], interval=0.2,
                          # It stands for the pyresque-work command printed above, so its
                          # hints speak of that command's flags.
                          command="pyresque-work",
                          exit_on_complete=not serve, history=3600.0 if serve else None)
    stop = threading.Event()
    follower = None
    if serve:
        follower = threading.Thread(target=_follow, args=(client, stop), name="demo-follow",
                                    daemon=True)
        follower.start()
    try:
        run_worker(config)
    except WorkerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stop.set()
        if follower is not None:
            follower.join(timeout=5)  # its last look prints the jobs finished at the end


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
              help="Afterwards keep the worker running for redis-cli / Ruby until Ctrl-C, "
                   "printing each job it finishes.")
def demo(redis_url: Optional[str], namespace: Optional[str], serve: bool) -> None:
    """Run a worker on high=2,low=1,default against sample jobs and show what happened."""
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
        client = Client(url=url, namespace=namespace)
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
    _say_commands(client, url, serve, embedded=server is not None)
    _work(client, url, serve)
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
