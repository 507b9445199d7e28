"""What every ``pyresque`` command shares: the connection, ``--json``, and error reporting.

The connection options may be given before the subcommand (``pyresque --redis URL queues``, where
the environment fills in what is missing, as for ``pyresque-work``) or after it (``pyresque queues
--redis URL``); after wins. Redis is only contacted when a command needs it, and any Redis error
becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, TypeVar

import click
import redis

from ...client._client import Client
from ...protocol import wire
from ...protocol.connection import TLSFiles, connect, describe, explain_error
from ...protocol.server_version import ServerTooOld, require_supported
from ...protocol.urls import PASSWORD_IN_PS, password_in_argv, redact_url, resolve_url
from .._options import connection_options, tls_files

__all__ = [
    "PROG",
    "AdminContext",
    "AdminError",
    "AdminGroup",
    "admin_command",
    "json_array",
    "json_option",
]

PROG = "pyresque"
F = TypeVar("F", bound=Callable[..., Any])

# Long enough for a batch of a retry-all on a busy server, short enough not to hang a terminal.
_CONNECT_TIMEOUT = 5.0
_SOCKET_TIMEOUT = 60.0
_LEAF_OPTIONS = ("redis_url", "tls_ca", "tls_cert", "tls_key", "namespace", "as_json")


class AdminError(click.ClickException):
    """A failure reported as one line on stderr, exit status 1."""

    exit_code = 1


class AdminContext:
    """Per-invocation state: where Redis is, the namespace, the output mode, the client."""

    def __init__(self, redis_url: Optional[str], tls: Optional[TLSFiles], namespace: str,
                 as_json: bool) -> None:
        self.redis_url = redis_url
        self.tls = tls
        self.namespace = namespace
        self.as_json = as_json
        self._client: Optional[Client] = None
        self._now: Optional[float] = None
        self._warned = False

    def override(self, redis_url: Optional[str], tls_ca: Optional[str], tls_cert: Optional[str],
                 tls_key: Optional[str], namespace: Optional[str], as_json: bool) -> None:
        """Apply the options given after the subcommand (``None`` = not given)."""
        if redis_url is not None:
            self.redis_url = redis_url
        tls = tls_files(tls_ca, tls_cert, tls_key)
        if tls is not None:
            self.tls = tls
        if namespace is not None:
            self.namespace = namespace
        self.as_json = self.as_json or as_json

    @property
    def where(self) -> str:
        """The Redis URL in use, password hidden."""
        return redact_url(resolve_url(self.redis_url))

    @property
    def client(self) -> Client:
        """The :class:`Client`, connected on first use."""
        if self._client is None:
            conn = connect(self.redis_url, tls=self.tls, socket_timeout=_SOCKET_TIMEOUT,
                           socket_connect_timeout=_CONNECT_TIMEOUT)
            try:  # its first command: a server too old is one line, not a failure mid-way
                require_supported(conn, describe(conn))
            except ServerTooOld as exc:
                conn.close()
                raise AdminError(str(exc)) from None
            self._client = Client(conn, namespace=self.namespace)
        return self._client

    def now(self) -> float:
        """Redis server time in epoch seconds, read once per command.

        Ages are measured on the server's clock, the one heartbeats are written and pruned by.
        """
        if self._now is None:
            seconds, micros = self.client.redis.time()
            self._now = int(seconds) + int(micros) / 1e6
        return self._now

    def warn_of_password_in_ps(self) -> None:
        """Say once, on stderr, that the Redis password stands on the command line, where
        ``ps`` shows it; only once Redis was used, so that a failure stays one line."""
        if self._client is not None and not self._warned and password_in_argv(self.redis_url):
            self._warned = True
            click.echo(f"{PROG}: warning: {PASSWORD_IN_PS}", err=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.redis.close()
            self._client = None


class AdminGroup(click.Group):
    """The ``pyresque`` group: one line per error, never a traceback."""

    def main(self, args: Any = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from ..work import run_command  # shared with pyresque-work: same messages and exit codes

        argv = list(args) if args is not None else None
        # Always named pyresque in messages, also under `python -m` or a test runner. (A closed
        # pipe, as in `pyresque failed list | head`, is handled quietly by click itself.)
        run_command(self, PROG, argv)
        return None  # run_command always exits; this is for the type checker

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
        except redis.RedisError as exc:
            if not isinstance(ctx.obj, AdminContext):
                raise AdminError(explain_error(exc, "?")) from None
            raise AdminError(explain_error(exc, ctx.obj.where, ctx.obj.tls)) from None
        if isinstance(ctx.obj, AdminContext):  # set by the group's callback, run just now
            ctx.obj.warn_of_password_in_ps()
        return result


def json_option(function: F) -> F:
    """``--json``: print machine-readable JSON instead of a table."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (stable field names, raw times) instead of a table.")(
        function)


def admin_command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the connection options and ``--json``; it receives the
    :class:`AdminContext` as its first argument."""

    @functools.wraps(function)
    def run(**kwargs: Any) -> Any:
        admin = click.get_current_context().find_object(AdminContext)
        if admin is None:  # the command was invoked outside the group (tests)
            admin = AdminContext(None, None, "resque:", False)
        admin.override(**{name: kwargs.pop(name) for name in _LEAF_OPTIONS})
        return function(admin, **kwargs)

    return json_option(connection_options(from_env=False, hide_tls=True)(run))


def json_array(text: str, param_hint: str) -> list[Any]:
    """Job arguments given on the command line: a JSON array, else a bad-parameter error."""
    try:
        value = wire.loads(text)
    except wire.DecodeError as exc:
        reason = str(exc).removeprefix("payload is ").removeprefix("payload ")
        raise click.BadParameter(reason, param_hint=param_hint) from None
    if not isinstance(value, list):
        raise click.BadParameter(f"must be a JSON array, like '[1, \"two\"]', not {text!r}",
                                 param_hint=param_hint)
    return value
