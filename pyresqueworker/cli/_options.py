"""The Redis connection options every pyresque command line shares.

``pyresque-work`` and the admin CLI ``pyresque`` take the same ``--redis``, ``--tls-*`` and
``--namespace`` flags, read from the same environment variables, so one ``REDIS_URL`` serves both.
"""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

import click

from ..protocol.connection import NAMESPACE_ENV, REDIS_ENV, TLSFiles

__all__ = ["NAMESPACE_ENV", "REDIS_ENV", "connection_options", "ps_note", "tls_files"]

F = TypeVar("F", bound=Callable[..., object])


_FILE = click.Path(exists=True, dir_okay=False)


def ps_note(when: str) -> str:
    """What ``--redis`` help says about a password on the command line: ``ps`` shows it to
    every user of the machine (``when``: for how long)."""
    return f"A password in it shows in ps {when}: prefer PYRESQUE_REDIS or REDIS_URL."


def connection_options(*, from_env: bool = True, hide_tls: bool = False,
                       when_shown: str = "while the command runs") -> Callable[[F], F]:
    """Add ``--redis`` (``redis_url``), ``--tls-ca``, ``--tls-cert``, ``--tls-key`` and
    ``--namespace`` to a click command.

    ``from_env=False`` gives options with no environment fallback and no defaults (``None``
    when not given), for a subcommand that may override what its group already read.
    ``when_shown``: how long ``ps`` shows a password given with ``--redis`` (see
    :func:`ps_note`).
    """

    def env(*names: str) -> Optional[list[str]]:
        return list(names) if from_env else None

    def decorate(function: F) -> F:
        options = [
            click.option("--redis", "redis_url", envvar=env(*REDIS_ENV),
                         help="redis://, rediss://, unix:// or redis+sentinel:// URL. "
                              + ps_note(when_shown) + "  "
                              + ("[default: redis://127.0.0.1:6379/0]" if from_env else
                                 "[default: as given before the subcommand, or "
                                 "PYRESQUE_REDIS / RESQUE_REDIS_URL / REDIS_URL]")),
            click.option("--tls-ca", envvar=env("PYRESQUE_TLS_CA"), type=_FILE, hidden=hide_tls,
                         help="CA bundle to trust for rediss:// (default: the system's)."),
            click.option("--tls-cert", envvar=env("PYRESQUE_TLS_CERT"), type=_FILE,
                         hidden=hide_tls, help="Client certificate for rediss://."),
            click.option("--tls-key", envvar=env("PYRESQUE_TLS_KEY"), type=_FILE,
                         hidden=hide_tls, help="Key of the client certificate."),
            click.option("--namespace", default="resque:" if from_env else None,
                         envvar=env(NAMESPACE_ENV), show_default=from_env,
                         help="Key prefix shared with Ruby ('{resque}:' for Redis Cluster)."
                              + ("" if from_env else "  [default: resque:]")),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def tls_files(ca: Optional[str], cert: Optional[str], key: Optional[str]) -> Optional[TLSFiles]:
    """The TLS files given, or ``None`` when there are none."""
    files = TLSFiles(ca, cert, key)
    return files if files.options() else None
