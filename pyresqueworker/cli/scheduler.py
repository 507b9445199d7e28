"""``pyresque-scheduler``: runs the library's :class:`~pyresqueworker.worker.scheduler.Scheduler`
until a signal stops it. ``python -m pyresqueworker.cli.scheduler --redis URL`` does the same.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Optional

import click
import redis

from ..client import Client
from ..log import logger, setup_logging
from ..protocol.connection import connect, describe, explain_error
from ..protocol.server_version import ServerTooOld, require_supported
from ..protocol.urls import PASSWORD_IN_PS, password_in_argv, redact_url, resolve_url
from ..worker._housekeeping import set_proctitle
from ..worker.scheduler import LOCK_TIMEOUT, Scheduler
from ._options import connection_options, tls_files
from .work import run_command

__all__ = ["main", "scheduler_main"]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@connection_options(when_shown="for a moment, until the scheduler renames its process")
@click.option("--interval", default=5.0, type=click.FloatRange(0.01, LOCK_TIMEOUT / 2),
              envvar=["PYRESQUE_SCHEDULER_INTERVAL", "RESQUE_SCHEDULER_INTERVAL"],
              help="Seconds between passes (resque-scheduler: 5).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"],
              case_sensitive=False), default="info", envvar="PYRESQUE_LOG_LEVEL")
def main(redis_url: Optional[str], tls_ca: Optional[str], tls_cert: Optional[str],
         tls_key: Optional[str], namespace: str, interval: float, log_level: str) -> int:
    """Move due resque-scheduler delayed jobs to their queues (one master among schedulers)."""
    setup_logging(log_level.upper())
    url = resolve_url(redis_url)
    # The command line may hold the Redis password: `ps` shows this title instead.
    set_proctitle(f"pyresque-scheduler {redact_url(url)}")
    tls = tls_files(tls_ca, tls_cert, tls_key)
    conn = connect(url, tls=tls)
    try:
        conn.ping()
        require_supported(conn, describe(conn))
    except redis.RedisError as exc:
        raise _Unreachable(explain_error(exc, redact_url(url), tls)) from None
    if password_in_argv(url):  # said once it started: a failed start stays one line
        logger.warning(PASSWORD_IN_PS)
    client = Client(conn, namespace=namespace)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, request_stop)
    try:
        Scheduler(client, interval=interval).run(stop)
    finally:
        conn.close()
    return 0


class _Unreachable(Exception):
    """Redis cannot be reached at startup."""


def scheduler_main(argv: Optional[list[str]] = None) -> None:
    """Entry point of ``pyresque-scheduler``: one clear line on stderr for every error."""
    run_command(main, "pyresque-scheduler", argv, fatal=(_Unreachable, ServerTooOld))


if __name__ == "__main__":
    scheduler_main()
