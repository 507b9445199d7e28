"""Where a Redis URL and a namespace come from, and how a URL is shown.

Every entry point (the command lines, ``Client()``/``AsyncClient()``, job handles' default
clients, ``WorkerConfig``, Django's ``get_client``) that is given no URL or namespace asks
:func:`resolve_url` and :func:`resolve_namespace`: one place, one order of the environment
variables, so a client and a worker started in one environment always meet on one Redis.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from .wire import DEFAULT_NAMESPACE

__all__ = [
    "DEFAULT_URL", "NAMESPACE_ENV", "PASSWORD_IN_PS", "REDIS_ENV", "password_in_argv",
    "redact_url", "resolve_namespace", "resolve_url",
]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: Where every entry point reads the Redis URL from when none is given (first set wins): the
#: command lines, ``Client()``/``AsyncClient()``, the default clients of job handles, a
#: ``WorkerConfig`` without ``redis_url`` and Django's ``get_client``. One order, so that a
#: client and a worker started in one environment always meet on one Redis.
REDIS_ENV = ("PYRESQUE_REDIS", "RESQUE_REDIS_URL", "REDIS_URL")
#: Where the same entry points read the namespace from when none is given.
NAMESPACE_ENV = "PYRESQUE_NAMESPACE"
#: Said once when the Redis URL with its password is on the process's command line.
PASSWORD_IN_PS = ("the Redis password is on the command line (--redis), where other users of "
                  "this machine can read it with ps; set PYRESQUE_REDIS (or REDIS_URL) instead")


def resolve_url(url: Optional[str] = None) -> str:
    """The URL to use: the argument, else the first set of :data:`REDIS_ENV`
    (``PYRESQUE_REDIS``, ``RESQUE_REDIS_URL``, ``REDIS_URL``), else local."""
    if url:
        return url
    for name in REDIS_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return DEFAULT_URL


def resolve_namespace(namespace: Optional[str] = None) -> str:
    """The namespace to use: the argument, else ``PYRESQUE_NAMESPACE``, else ``resque:``.
    An empty argument stays empty, for the caller to refuse (``Keys`` does)."""
    if namespace is not None:
        return namespace
    return os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE


def password_in_argv(url: Optional[str], argv: Optional[Sequence[str]] = None) -> bool:
    """Whether ``url`` (resolved as :func:`resolve_url` does) holds a password and stands on
    the command line (``argv``, default ``sys.argv``), where ``ps`` shows it to every user of
    the machine; a URL from the environment is not there."""
    resolved = resolve_url(url)
    if redact_url(resolved) == resolved:  # no password to see
        return False
    return any(resolved in arg for arg in (sys.argv if argv is None else argv))


def redact_url(url: str) -> str:
    """The URL with any password (and query-string password) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = (f"{user}:***@" if ":" in userinfo else "***@") + host
        if not user and ":" in userinfo:
            netloc = ":***@" + host
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
