"""Redis connections from URLs, with credentials kept out of every message.

One :class:`ConnectionFactory` per worker process (or command) opens every connection it
uses, so all of them follow Redis when it moves (see :mod:`pyresqueworker.protocol._locate`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from ._failover_watch import FailoverWatch
from ._locate import (
    Address,
    LocatedConnection,
    LocatedSSLConnection,
    Locator,
    NodeLocator,
    SentinelLocator,
)
from .urls import DEFAULT_URL, NAMESPACE_ENV, REDIS_ENV, redact_url, resolve_url
from .wire import has_hash_tag as wire_has_hash_tag

# DEFAULT_URL, NAMESPACE_ENV, REDIS_ENV, redact_url and resolve_url live in .urls; they are
# named here too, where callers have always imported them from.
__all__ = [
    "DEFAULT_URL", "NAMESPACE_ENV", "REDIS_ENV", "WORKER_PERMISSIONS", "ConfigError",
    "ConnectionFactory", "CredentialsError", "TLSFiles", "certificate_required",
    "connect", "connect_async", "credentials_error", "describe", "explain_error",
    "pinned_to_namespace", "redact_url", "resolve_url", "wants_client_certificate",
]

_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster",
            "rediss+cluster")


class ConfigError(ValueError):
    """A setting that cannot work; its message is safe to print (no credentials)."""


class CredentialsError(redis.exceptions.AuthenticationError):
    """Redis refused the connection's credentials, or wanted some and got none; the message
    (from :func:`explain_error`) says which and how to give them, without the password."""


@dataclass(frozen=True)
class TLSFiles:
    """Files for ``rediss://``: a CA bundle to trust, and a client certificate and key."""

    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None

    def options(self) -> dict[str, Any]:
        given = {"ssl_ca_certs": self.ca, "ssl_certfile": self.cert, "ssl_keyfile": self.key}
        return {name: path for name, path in given.items() if path}


class ConnectionFactory:
    """Every Redis connection of one worker process (or one command), from one URL.

    All connections share a :class:`~pyresqueworker.protocol._locate.Locator`, so when one of them
    learns that Redis moved (a Sentinel failover, a ``MOVED`` reply, ``READONLY`` from a
    demoted master) every other reconnects to the new place before its next command.
    URLs: ``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://[user:password@]host:26379[,host2:26379]/<service>[/<db>]`` (the
    Sentinels are asked for the master on every connect; ``rediss+sentinel://`` for TLS to
    the master), and ``redis+cluster://host:port[,host:port]/`` (any nodes of a Redis
    Cluster; ``rediss+cluster://`` for TLS). Replies stay bytes (``decode_responses=False``)
    so payloads are kept byte for byte.
    """

    def __init__(self, url: Optional[str] = None, *, tls: Optional[TLSFiles] = None) -> None:
        self.url = resolve_url(url)
        self.tls = tls
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme not in _SCHEMES:
            raise ConfigError(
                f"unsupported Redis URL {redact_url(self.url)!r}: use redis://, rediss://, "
                "unix://, redis+sentinel:// or redis+cluster://"
            )
        self.scheme = scheme
        self.is_cluster = scheme.endswith("+cluster")
        self.locator: Optional[Locator] = None
        self._sentinels: list[Address] = []
        self._sentinel_options: dict[str, Any] = {}
        try:
            self._kwargs = self._parse()
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"invalid Redis URL {redact_url(self.url)!r}: {exc}") from None

    def _parse(self) -> dict[str, Any]:
        """Connection keyword arguments from the URL; sets up the locator."""
        if self.scheme == "unix":
            return dict(parse_url(self.url))  # type: ignore[no-untyped-call]
        if self.scheme in ("redis", "rediss"):
            node: dict[str, Any] = dict(parse_url(self.url))  # type: ignore[no-untyped-call]
            node.pop("connection_class", None)
            self.locator = NodeLocator([(node.pop("host", "localhost"),
                                         int(node.pop("port", 6379)))])
            return node
        parts = urlsplit(self.url)
        hosts = _host_list(parts.netloc.rsplit("@", 1)[-1],
                           26379 if self.scheme.endswith("+sentinel") else 6379)
        path = [p for p in parts.path.split("/") if p]
        kwargs: dict[str, Any] = {}
        if parts.username:
            kwargs["username"] = unquote(parts.username)
        if parts.password:
            kwargs["password"] = unquote(parts.password)
        if self.is_cluster:
            if path and path[0] != "0":
                raise ValueError("a Redis Cluster has only database 0")
            self.locator = NodeLocator(hosts)
            return kwargs
        if not path:
            raise ValueError("the URL must name the Sentinel service, e.g. /mymaster")
        kwargs["db"] = int(path[1]) if len(path) > 1 else 0
        query = parse_qs(parts.query)
        if "sentinel_password" in query:
            self._sentinel_options["password"] = query["sentinel_password"][0]
        self._sentinels = hosts
        return {**kwargs, "service": unquote(path[0])}

    def _client_kwargs(self, options: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The connection keyword arguments for ``options``, and whether TLS is on: one
        source for the blocking and the asyncio clients."""
        options.setdefault("decode_responses", False)
        options.setdefault("health_check_interval", 30)
        kwargs = {**self._kwargs, **options}
        secure = bool(self.scheme.startswith("rediss") or kwargs.pop("ssl", False))
        if self.tls is not None and secure:
            kwargs.update(self.tls.options())
        return kwargs, secure

    def connect(self, **options: Any) -> redis.Redis:
        """A ``redis.Redis`` client; ``single_connection_client=True`` for one socket."""
        options.setdefault("retry", _default_retry(Retry))
        single = options.pop("single_connection_client", False)
        kwargs, secure = self._client_kwargs(options)
        pool_class = _LazyPool if single else redis.ConnectionPool
        if self.scheme == "unix":
            pool = pool_class(**kwargs)
        else:
            service = kwargs.pop("service", None)
            if service is not None and self.locator is None:
                socket_options = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
                self._sentinel_options.update(socket_options)
                sentinel = Sentinel(self._sentinels,  # type: ignore[no-untyped-call,unused-ignore]
                                    sentinel_kwargs=self._sentinel_options)
                self.locator = SentinelLocator(sentinel, service)
            assert self.locator is not None
            first = self.locator_seed()
            pool = pool_class(
                connection_class=LocatedSSLConnection if secure else LocatedConnection,
                locator=self.locator, host=first[0], port=first[1], **kwargs)
        return redis.Redis(connection_pool=pool, single_connection_client=single)

    def connect_async(self, **options: Any) -> redis.asyncio.Redis:
        """A ``redis.asyncio.Redis`` for the same URL, credentials and TLS files.

        Sentinel URLs ask the Sentinels for the master on every connect (redis-py's asyncio
        Sentinel support); ``redis+cluster://`` is refused (pass a client pinned with
        :func:`pinned_to_namespace` to the blocking :class:`~pyresqueworker.Client`
        instead).
        """
        from redis.asyncio import connection as aio_connection
        from redis.asyncio.retry import Retry as AsyncRetry
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        if self.is_cluster:
            raise ConfigError(f"{redact_url(self.url)!r}: the asyncio client does not "
                              "support redis+cluster:// URLs")
        options.setdefault("retry", _default_retry(AsyncRetry))
        kwargs, secure = self._client_kwargs(options)
        if self.scheme == "unix":
            kwargs["connection_class"] = aio_connection.UnixDomainSocketConnection
            return redis.asyncio.Redis(connection_pool=redis.asyncio.ConnectionPool(**kwargs))
        service = kwargs.pop("service", None)
        if service is not None:
            socket_options = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
            sentinel = AsyncSentinel(self._sentinels,
                                     sentinel_kwargs={**self._sentinel_options, **socket_options})
            client: redis.asyncio.Redis = sentinel.master_for(service, ssl=secure, **kwargs)
            return client
        host, port = self.locator_seed()
        pool = redis.asyncio.ConnectionPool(
            connection_class=aio_connection.SSLConnection if secure else aio_connection.Connection,
            host=host, port=port, **kwargs)
        return redis.asyncio.Redis(connection_pool=pool)

    def locator_seed(self) -> Address:
        if isinstance(self.locator, NodeLocator):
            return self.locator.seeds[0]
        return self._sentinels[0]

    def holding(self) -> bool:
        """True while a Sentinel failover is being carried out (no claims then)."""
        return self.locator is not None and self.locator.holding()

    def failover_watch(self) -> Optional[FailoverWatch]:
        """A watch of this URL's Sentinels (not started), or None for other URLs."""
        if not isinstance(self.locator, SentinelLocator):
            return None
        return FailoverWatch(self.locator, self._sentinels, self._sentinel_options)


def _default_retry(retry_class: Any) -> Any:
    """Ten retries with short backoff; where redis-py can be told (its ``is_retryable``),
    none for what no retry fixes: credentials refused or missing, or a TLS server's demand
    for a client certificate. redis-py nests the retries of a command and of its connect, so
    such an error would otherwise take ~45 s to be raised."""
    checks = "is_retryable" in inspect.signature(retry_class.__init__).parameters
    return retry_class(ExponentialWithJitterBackoff(base=0.01, cap=1.0), 10,
                       **({"is_retryable": _retryable} if checks else {}))


def _retryable(exc: Exception) -> bool:
    # A module function: redis-py deep-copies the retry into every connection.
    return not (isinstance(exc, redis.exceptions.AuthenticationError)
                or certificate_required(exc))


class _LazyPool(redis.ConnectionPool):
    """For single-connection clients: the client's own connection opens on its first command,
    not when the client is built, so a worker can set itself up while Redis is away. (Its
    pipelines take further connections from the pool as usual.) That connection is the
    client's, not the pool's to hand out: it is closed with the client, or the pool."""

    lazy_connection: Any = None

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.lazy_connection is not None:
            return super().get_connection(*args, **kwargs)
        self.lazy_connection = self.make_connection()
        return self.lazy_connection

    def release(self, connection: Any) -> None:
        if connection is not None and connection is self.lazy_connection:
            connection.disconnect()
        else:
            super().release(connection)

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        super().disconnect(*args, **kwargs)
        if self.lazy_connection is not None:
            self.lazy_connection.disconnect()


def _host_list(netloc: str, default_port: int) -> list[Address]:
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if host else default_port))
    return hosts


def pinned_to_namespace(cluster: Any, namespace: str) -> redis.Redis:
    """A client for our keys from a ``redis.cluster.RedisCluster``.

    Every key of a namespace with a hash tag lives in one slot, so one node serves them all
    and the package's scripts and transactions run there unchanged; the client follows
    ``MOVED`` when the slot changes hands, starting from any node the cluster knows.
    """
    if not wire_has_hash_tag(namespace):
        raise ConfigError(
            f"the namespace {namespace!r} needs a hash tag (e.g. '{{resque}}:') on a Redis "
            "Cluster, so every key of a job lives in one slot")
    owner = cluster.get_node_from_key(namespace + "queues")
    others = [(n.host, int(n.port)) for n in cluster.get_nodes()]
    seeds = [(owner.host, int(owner.port)), *(a for a in others if a != (owner.host,
                                                                        int(owner.port)))]
    kwargs = {k: v for k, v in cluster.nodes_manager.connection_kwargs.items()
              if k not in ("host", "port", "connection_class", "retry", "decode_responses")}
    secure = bool(kwargs.pop("ssl", False)) or (
        cluster.nodes_manager.connection_kwargs.get("connection_class") is SSLConnection)
    pool = redis.ConnectionPool(
        connection_class=LocatedSSLConnection if secure else LocatedConnection,
        locator=NodeLocator(seeds), host=seeds[0][0], port=seeds[0][1], decode_responses=False,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), 10), **kwargs)
    return redis.Redis(connection_pool=pool)


#: What a worker's Redis user must be allowed (for an ACL user: ``+@all`` works, or these).
WORKER_PERMISSIONS = ("+@read", "+@write", "+@scripting", "+@connection", "+time", "+info",
                      "+client", "~<namespace>*")


# What a server that wants a password says to a connection that gave none: RESP2's reply,
# and RESP3's to the HELLO redis-py sends first.
_NO_PASSWORD_GIVEN = ("NOAUTH", "Authentication required",
                      "HELLO must be called with the client already authenticated")
# How a TLS server that requires a client certificate turns away a connection without one:
# TLS 1.3 sends its alert after the handshake, so the client sees the alert, or (when it was
# writing its first command at that moment) the connection closed under it. Only the alert
# is certain: a connection closed under a command may also be a blip, worth a retry.
_CERTIFICATE_REQUIRED = "certificate required"
_CLOSED_UNDER_IT = ("EOF occurred in violation of protocol", "unexpected eof while reading",
                    "Connection reset by peer")


def _text_of(exc: BaseException) -> str:
    return f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}".lower()


def certificate_required(exc: BaseException) -> bool:
    """Whether ``exc`` carries a TLS server's "certificate required" alert: no retry helps."""
    return _CERTIFICATE_REQUIRED in _text_of(exc)


def wants_client_certificate(exc: BaseException, where: str,
                             tls: Optional[TLSFiles] = None) -> bool:
    """Whether ``exc`` is, or looks like, a TLS server turning away a connection made to
    ``where`` (a URL) without a client certificate (``tls`` holds none)."""
    if not where.lower().startswith("rediss") or (tls is not None and tls.cert):
        return False
    text = _text_of(exc)
    return any(sign.lower() in text for sign in (_CERTIFICATE_REQUIRED, *_CLOSED_UNDER_IT))


def explain_error(exc: BaseException, where: str, tls: Optional[TLSFiles] = None) -> str:
    """One line, the same in every command, for a Redis that cannot be used as configured.

    ``where`` is the redacted URL (see :func:`redact_url`); ``tls`` the TLS files the
    connection was made with, to tell a server that wants a client certificate.
    """
    text = str(exc).strip()
    if isinstance(exc, CredentialsError):  # explained already (by a Client)
        return text
    if isinstance(exc, redis.exceptions.AuthenticationError):
        if any(sign in text for sign in _NO_PASSWORD_GIVEN):
            # Redis's own words (NOAUTH, or RESP3's advice about HELLO AUTH) would mislead.
            return (f"Redis at {where} needs a password and none was given: put it in the URL,"
                    " redis://:PASSWORD@host:port/db (redis://USER:PASSWORD@... for an ACL "
                    "user), e.g. in PYRESQUE_REDIS or REDIS_URL")
        return f"Redis at {where} refused the credentials (wrong user or password): {text}"
    if wants_client_certificate(exc, where, tls):
        return (f"Redis at {where} asked for a TLS client certificate and none was given; pass"
                " --tls-cert and --tls-key (PYRESQUE_TLS_CERT, PYRESQUE_TLS_KEY; from Python "
                f"TLSFiles(cert=..., key=...)): {text}")
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return (f"Redis at {where} refused a command to this ACL user: {text}; the user needs "
                + " ".join(WORKER_PERMISSIONS))
    if isinstance(exc, redis.exceptions.InvalidResponse) or "Protocol error" in text:
        return f"{where} does not answer like a Redis server: {text}"
    if "DB index is out of range" in text or "invalid DB index" in text:
        return f"Redis at {where} has no such database (the number after the last /): {text}"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return f"cannot reach Redis at {where}: {text}"
    return f"Redis at {where} answered with an error: {type(exc).__name__}: {text}"


def credentials_error(exc: redis.exceptions.AuthenticationError,
                      client: redis.Redis | redis.asyncio.Redis) -> CredentialsError:
    """``exc`` as a :class:`~pyresqueworker.Client` raises it: explained the way the command
    lines explain it (a password missing, or refused), still an ``AuthenticationError``."""
    return CredentialsError(explain_error(exc, describe(client)))


def connect(
    url: Optional[str] = None, *, tls: Optional[TLSFiles] = None, **options: Any
) -> redis.Redis:
    """A ``redis.Redis`` for any URL :class:`ConnectionFactory` takes (its own factory)."""
    return ConnectionFactory(url, tls=tls).connect(**options)


def connect_async(
    url: Optional[str] = None, *, tls: Optional[TLSFiles] = None, **options: Any
) -> redis.asyncio.Redis:
    """A ``redis.asyncio.Redis`` for the URLs :func:`connect` takes, except
    ``redis+cluster://`` (see :meth:`ConnectionFactory.connect_async`)."""
    return ConnectionFactory(url, tls=tls).connect_async(**options)


def describe(client: redis.Redis | redis.asyncio.Redis) -> str:
    """Where a client points, without credentials, for log lines and errors."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    locator = kwargs.get("locator")
    if isinstance(locator, SentinelLocator):
        return f"sentinel service {locator.service}"
    service = getattr(pool, "service_name", None)  # redis.asyncio's Sentinel pool
    if service:
        return f"sentinel service {service}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    if isinstance(locator, NodeLocator) and len(locator.seeds) > 1:
        return "cluster " + ",".join(f"{h}:{p}" for h, p in locator.seeds)
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
