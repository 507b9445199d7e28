"""Redis connections from URLs, with credentials kept out of every message."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

__all__ = ["DEFAULT_URL", "ConfigError", "TLSFiles", "connect", "redact_url", "resolve_url"]

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_ENV_VARS = ("RESQUE_REDIS_URL", "REDIS_URL")
_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


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


@dataclass(frozen=True)
class TLSFiles:
    """Files for ``rediss://``: a CA bundle to trust, and a client certificate and key."""

    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None

    def options(self) -> dict[str, Any]:
        given = {"ssl_ca_certs": self.ca, "ssl_certfile": self.cert, "ssl_keyfile": self.key}
        return {name: path for name, path in given.items() if path}


def connect(
    url: Optional[str] = None, *, tls: Optional[TLSFiles] = None, **options: Any
) -> redis.Redis:
    """A ``redis.Redis`` for ``redis://``, ``rediss://``, ``unix://`` or Sentinel URLs.

    ``redis+sentinel://[user:password@]host:26379[,host2:26379]/<service>[/<db>]`` asks the
    Sentinels for the current master (``rediss+sentinel://`` for TLS to the master). Replies
    stay bytes (``decode_responses=False``) so payloads are kept byte for byte.
    """
    resolved = resolve_url(url)
    scheme = resolved.split("://", 1)[0].lower() if "://" in resolved else ""
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"unsupported Redis URL {redact_url(resolved)!r}: use redis://, rediss://, "
            "unix:// or redis+sentinel://"
        )
    options.setdefault("decode_responses", False)
    options.setdefault("health_check_interval", 30)
    if tls is not None:
        options.update(tls.options())
    try:
        if scheme.endswith("+sentinel"):
            return _sentinel_master(resolved, scheme.startswith("rediss"), options)
        return redis.Redis.from_url(resolved, **options)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(resolved)!r}: {exc}") from None


def _sentinel_master(url: str, use_tls: bool, options: dict[str, Any]) -> redis.Redis:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if host else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("the URL must name the Sentinel service, e.g. /mymaster")
    service = unquote(path[0])
    conn_options = dict(options)
    single = conn_options.pop("single_connection_client", False)
    conn_options["db"] = int(path[1]) if len(path) > 1 else 0
    if parts.username:
        conn_options["username"] = unquote(parts.username)
    if parts.password:
        conn_options["password"] = unquote(parts.password)
    if use_tls:
        conn_options["ssl"] = True
    sentinel_options = {k: v for k, v in conn_options.items() if k.startswith("socket_")}
    query = parse_qs(parts.query)
    if "sentinel_password" in query:
        sentinel_options["password"] = query["sentinel_password"][0]
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    pool = SentinelConnectionPool(service, sentinel, **conn_options)  # type: ignore[no-untyped-call]
    return redis.Redis(connection_pool=pool, single_connection_client=single)


def describe(client: redis.Redis) -> str:
    """Where a client points, without credentials, for log lines and errors."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return f"sentinel service {pool.service_name}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
