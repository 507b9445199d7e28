"""Redis connections from URLs, with credentials kept out of every message."""

from __future__ import annotations

import os
import re
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

import redis

__all__ = ["DEFAULT_URL", "ConfigError", "connect", "redact_url", "resolve_url"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_ENV_VARS = ("RESQUE_REDIS_URL", "REDIS_URL")
_SCHEMES = ("redis", "rediss", "unix")


class ConfigError(ValueError):
    """A setting that cannot work; its message is safe to print (no credentials)."""


def resolve_url(url: Optional[str] = None) -> str:
    """The URL to use: the argument, else ``RESQUE_REDIS_URL``, else ``REDIS_URL``, else local."""
    if url:
        return url
    for name in _ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return DEFAULT_URL


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


def connect(url: Optional[str] = None, **options: Any) -> redis.Redis:
    """A ``redis.Redis`` for ``redis://``, ``rediss://`` or ``unix://`` URLs.

    Replies stay bytes (``decode_responses=False``) so payloads are kept byte for byte.
    """
    resolved = resolve_url(url)
    scheme = resolved.split("://", 1)[0].lower() if "://" in resolved else ""
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"unsupported Redis URL {redact_url(resolved)!r}: use redis://, rediss:// or unix://"
        )
    options.setdefault("decode_responses", False)
    options.setdefault("health_check_interval", 30)
    try:
        return redis.Redis.from_url(resolved, **options)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(resolved)!r}: {exc}") from None


def describe(client: redis.Redis) -> str:
    """Where a client points, without credentials, for log lines and errors."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
