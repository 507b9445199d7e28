"""``pyresque-work``: a thin click layer over :func:`pyresqueworker.run_worker`.

Every flag can also come from an environment variable (shown in ``--help``); Resque's own
``QUEUES``/``QUEUE``, ``INTERVAL`` and ``RESQUE_REDIS_URL``/``REDIS_URL`` work too (after
``PYRESQUE_REDIS``: the order every entry point reads, see :mod:`pyresqueworker.protocol.urls`).
A bad value prints one line and exits with 2; an unreachable Redis prints one line and exits
with 1; never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import click

from .._version import __version__
from ..client.history import parse_duration
from ..log import setup_logging
from ..protocol.connection import NAMESPACE_ENV, REDIS_ENV, ConfigError, TLSFiles
from ..protocol.queues import QueueSpec, QueueSpecError
from ..worker.config import MAX_ASYNC_SLOTS, MAX_CONNECTIONS, WorkerConfig
from ..worker.runner import WorkerError, run_worker
from ._options import ps_note

__all__ = ["run_command", "work", "work_main"]


def _queues(_ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> QueueSpec:
    if not value:
        raise click.BadParameter("give the queues to work, e.g. --queues high=2,low=1")
    try:
        return QueueSpec.parse(value)
    except QueueSpecError as exc:
        raise click.BadParameter(str(exc)) from None


_FILE = click.Path(exists=True, dir_okay=False)


def _env(*names: str) -> list[str]:
    return list(names)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
               epilog="Every option can also be set from the environment: PYRESQUE_<OPTION> "
                      "(e.g. PYRESQUE_CONCURRENCY=8); Resque's QUEUES/QUEUE, INTERVAL and "
                      "RESQUE_REDIS_URL / REDIS_URL work too (PYRESQUE_REDIS first).")
@click.option("--queues", "-q", callback=_queues, envvar=_env("PYRESQUE_QUEUES", "QUEUES", "QUEUE"),
              help="Queues: 'high=2,low=1' weighted, 'high,low' strict, '*', 'mail_*', '!slow'.")
@click.option("--app", "-a", "apps", multiple=True, envvar="PYRESQUE_APP",
              help="Module or .py file that registers handlers (repeatable).")
@click.option("--redis", "redis_url", envvar=list(REDIS_ENV),
              help="redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL. "
                   + ps_note("for ~0.2 s, until the worker renames its process")
                   + "  [default: redis://127.0.0.1:6379/0]")
@click.option("--connect-timeout", default=30.0, type=click.FloatRange(0),
              envvar="PYRESQUE_CONNECT_TIMEOUT",
              help="Seconds to keep retrying Redis at start-up before giving up.")
@click.option("--tls-ca", envvar="PYRESQUE_TLS_CA", type=_FILE,
              help="CA bundle to trust for rediss:// (default: the system's).")
@click.option("--tls-cert", envvar="PYRESQUE_TLS_CERT", type=_FILE,
              help="Client certificate for rediss://.")
@click.option("--tls-key", envvar="PYRESQUE_TLS_KEY", type=_FILE,
              help="Key of the client certificate.")
@click.option("--namespace", default="resque:", envvar=NAMESPACE_ENV,
              help="Key prefix shared with Ruby ('{resque}:' for Redis Cluster).")
@click.option("--concurrency", "-c", default=1, type=click.IntRange(1, MAX_ASYNC_SLOTS),
              envvar="PYRESQUE_CONCURRENCY",
              help="Job slots per process (threads mode: at most 1000).")
@click.option("--execution", type=click.Choice(["auto", "threads", "asyncio"]), default="auto",
              envvar="PYRESQUE_EXECUTION",
              help="Slots as threads, or as tasks on one event loop (auto: asyncio when every "
                   "handler is async def).")
@click.option("--connections", type=click.IntRange(1, MAX_CONNECTIONS), default=None,
              envvar="PYRESQUE_CONNECTIONS",
              help="asyncio mode: connections the slots' claims share  [default: 2-8 by "
                   "concurrency]")
@click.option("--processes", "-p", default=1, type=click.IntRange(1, 256),
              envvar="PYRESQUE_PROCESSES", help="Worker processes under one supervisor.")
@click.option("--interval", default=1.0, type=click.FloatRange(0), envvar=_env(
              "PYRESQUE_INTERVAL", "INTERVAL"),
              help="Longest idle wait before re-checking all queues (0 = drain and exit).")
@click.option("--reply-spin-us", "reply_spin", default=200, type=click.IntRange(0, 10_000),
              envvar="PYRESQUE_REPLY_SPIN_US", callback=lambda _c, _p, v: v / 1e6,
              help="Microseconds a lone slot polls for its claim's reply before sleeping on it "
                   "(saves a Redis on the same host CPU; 0: never).")
@click.option("--exit-on-complete", is_flag=True, envvar="PYRESQUE_EXIT_ON_COMPLETE",
              help="Exit once every queue is empty.")
@click.option("--shutdown-timeout", default=25.0, type=click.FloatRange(0),
              envvar="PYRESQUE_SHUTDOWN_TIMEOUT", help="Seconds running jobs get after QUIT/TERM.")
@click.option("--on-shutdown-timeout", type=click.Choice(["requeue", "fail"]), default="requeue",
              envvar="PYRESQUE_ON_SHUTDOWN_TIMEOUT",
              help="Jobs still running at the deadline: back to their queue, or DirtyExit.")
@click.option("--heartbeat-interval", default=60.0, type=click.FloatRange(0.1),
              envvar="PYRESQUE_HEARTBEAT_INTERVAL", help="Seconds between heartbeats (Resque: 60).")
@click.option("--prune-after", default=300.0, type=click.FloatRange(1),
              envvar="PYRESQUE_PRUNE_AFTER",
              help="Heartbeat age that marks a worker dead (Resque: 300).")
@click.option("--on-dead-worker", type=click.Choice(["requeue", "fail"]), default="requeue",
              envvar="PYRESQUE_ON_DEAD_WORKER",
              help="A dead worker's job: back to the front of its queue, or a Prune failure.")
@click.option("--max-recoveries", default=3, type=click.IntRange(1),
              envvar="PYRESQUE_MAX_RECOVERIES",
              help="Recoveries of one job before it is failed as a poison pill.")
@click.option("--job-timeout", type=click.FloatRange(0, min_open=True), default=None,
              envvar="PYRESQUE_JOB_TIMEOUT",
              help="Seconds a job may run (handlers' timeout= wins); hard with --fork-per-job.")
@click.option("--result-ttl", type=click.IntRange(1), default=None, envvar="PYRESQUE_RESULT_TTL",
              help="Seconds a tracked job's result is kept, whatever its enqueue asked.")
@click.option("--fork-per-job", is_flag=True, envvar="PYRESQUE_FORK_PER_JOB",
              help="Run each job in a forked child, as Resque does (isolation, hard timeouts).")
@click.option("--tracing", type=click.Choice(["child", "link", "off"]), default="child",
              envvar="PYRESQUE_TRACING",
              help="OpenTelemetry span per job: child of the payload's traceparent, or a new "
                   "trace linked to it (needs opentelemetry and a tracer provider).")
@click.option("--max-jobs", type=click.IntRange(1), default=None, envvar="PYRESQUE_MAX_JOBS",
              help="Replace a worker process after this many jobs.")
@click.option("--max-memory", "max_memory_mb", type=click.FloatRange(0, min_open=True),
              default=None, envvar="PYRESQUE_MAX_MEMORY",
              help="Replace a worker process once its resident memory passes this many MB.")
@click.option("--scheduler", is_flag=True, envvar="PYRESQUE_SCHEDULER",
              help="Also run a resque-scheduler compatible scheduler (one is elected master).")
@click.option("--periodic/--no-periodic", default=True, envvar="PYRESQUE_PERIODIC",
              help="Enqueue cron schedules (@job(cron=...), registry.periodic, runtime ones).")
@click.option("--periodic-grace", default=60.0, type=click.FloatRange(1),
              envvar="PYRESQUE_PERIODIC_GRACE",
              help="Seconds a cron firing may be late (e.g. a restart) and still be enqueued.")
@click.option("--history", "history", default=None, envvar="PYRESQUE_HISTORY",
              metavar="RETENTION", callback=lambda _c, _p, v: _duration(v, "--history"),
              help="Record every finished job for this long (e.g. 7d, 12h, 3600).")
@click.option("--history-max", type=click.IntRange(1), default=100_000,
              envvar="PYRESQUE_HISTORY_MAX", help="Most history records kept (newest win).")
@click.option("--time-series/--no-time-series", default=True, envvar="PYRESQUE_TIME_SERIES",
              help="Sample counters and queues once a minute (fleet-wide) for dashboard charts.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              envvar="PYRESQUE_METRICS_PORT",
              help="Serve Prometheus metrics on this port at /metrics (needs prometheus-client).")
@click.option("--metrics-host", default="127.0.0.1", envvar="PYRESQUE_METRICS_HOST",
              help="Address the metrics endpoint listens on (0.0.0.0: every interface).")
@click.option("--fetch", type=click.Choice(["claim", "blpop"]), default="claim",
              envvar="PYRESQUE_FETCH", help="'claim' is atomic; 'blpop' is Resque's at-most-once.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              envvar="PYRESQUE_LOG_FORMAT")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"],
              case_sensitive=False), default="info", envvar="PYRESQUE_LOG_LEVEL")
@click.version_option(__version__, "--version", prog_name="pyresqueworker")
def work(**options: Any) -> int:
    """Work Resque jobs from Redis with Python handlers, beside Ruby Resque."""
    setup_logging(options.pop("log_level").upper(), options.pop("log_format"))
    options["apps"] = list(options["apps"])
    tls = TLSFiles(options.pop("tls_ca"), options.pop("tls_cert"), options.pop("tls_key"))
    options["tls"] = tls if tls.options() else None
    # The program's name (pyresque-work, manage.py pyresque_work) lets hints name its --app.
    config = WorkerConfig(**options, command=click.get_current_context().info_name)
    return run_worker(config)


def _duration(value: Optional[str], flag: str) -> Optional[float]:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def run_command(command: click.Command, prog: str, argv: Optional[list[str]] = None,
                fatal: tuple[type[Exception], ...] = ()) -> None:
    """Run a click command as a program: one clear line on stderr for every error.

    Bad values exit 2; ``WorkerError`` and the ``fatal`` errors (Redis unreachable...) exit 1;
    never a traceback.
    """
    stop_with_1: tuple[type[Exception], ...] = (WorkerError, *fatal)
    try:
        code = command.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"{prog}: error: {exc.format_message()}{_from_environment(exc, argv)}", err=True)
        sys.exit(exc.exit_code)
    except stop_with_1 as exc:
        click.echo(f"{prog}: error: {exc}", err=True)
        sys.exit(1)
    except (ValueError, ConfigError) as exc:
        click.echo(f"{prog}: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _from_environment(exc: click.ClickException, argv: Optional[list[str]]) -> str:
    """`` (from the environment: PYRESQUE_CONCURRENCY='abc')`` when a bad value came from a
    variable, which the flag's name alone does not reveal."""
    if not isinstance(exc, click.BadParameter) or not isinstance(exc.param, click.Option):
        return ""
    args = sys.argv[1:] if argv is None else argv
    flags = exc.param.opts + exc.param.secondary_opts
    if any(arg == flag or arg.startswith(flag + "=") for arg in args for flag in flags):
        return ""  # given on the command line
    envvar = exc.param.envvar
    names: list[str] = [envvar] if isinstance(envvar, str) else list(envvar or [])
    for name in names:
        if os.environ.get(name):
            return f" (from the environment: {name}={os.environ[name]!r})"
    return ""


def work_main(argv: Optional[list[str]] = None) -> None:
    """Entry point of ``pyresque-work``."""
    run_command(work, "pyresque-work", argv)
