"""How our own connections to Redis are opened and set up, like redis-py's would be.

The claim links (:mod:`pyresqueworker.protocol._claim_link`, and the asyncio ones of
:mod:`pyresqueworker.worker._aio_link`) own their sockets. :class:`LinkSettings` reads what a
redis-py connection of the same client would do from its public settings (the address or
its :class:`~pyresqueworker.protocol._locate.Locator`, TLS files, credentials, database,
client name, timeouts), and :class:`Handshake` is the set-up that follows the connect.

Failures are redis-py's exceptions, which the whole worker's outage handling catches:
``ConnectionError`` and ``TimeoutError`` for the socket, ``AuthenticationError`` for refused
credentials, :class:`~pyresqueworker.protocol.redis_errors.RedisUnavailable` for a transient
error reply, ``NoScriptError`` and other ``ResponseError`` classes for the rest.
"""

from __future__ import annotations

import functools
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import redis
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

from ._locate import Address, LocatedConnection, LocatedSSLConnection, Locator
from ._resp_parse import ReplyError
from .redis_errors import RedisUnavailable, transient_code

__all__ = ["Handshake", "LinkSettings", "connect_error", "reply_exception"]

# The redis-py connection classes whose settings a link knows how to reproduce.
_KNOWN = (Connection, SSLConnection, UnixDomainSocketConnection, LocatedConnection,
          LocatedSSLConnection)
_ERRORS: dict[str, type[redis.exceptions.ResponseError]] = {
    "NOSCRIPT": redis.exceptions.NoScriptError,
    "NOPERM": redis.exceptions.NoPermissionError,
    "EXECABORT": redis.exceptions.ExecAbortError,
}
# How servers refuse credentials (or want some), as redis-py tells AuthenticationError.
_AUTH_REFUSED = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password pair",
                 "Client sent AUTH, but no password is set", "called without any password")


def reply_exception(message: str) -> Exception:
    """The redis-py exception for an error reply's text (the code kept in the message)."""
    code = transient_code(message)
    if code is not None:
        return RedisUnavailable(message if message.startswith(code) else f"{code} {message}",
                                code)
    return _ERRORS.get(message.split(" ", 1)[0], redis.exceptions.ResponseError)(message)


@dataclass(frozen=True)
class LinkSettings:
    """How to open and set up a connection, as a redis-py connection of the same client would."""

    locator: Optional[Locator]  # where Redis is (None: ``address`` or ``path``, fixed)
    address: Address = ("localhost", 6379)
    path: Optional[str] = None  # a unix socket
    tls: Optional[Callable[[], ssl.SSLContext]] = None  # the context, for TLS
    credentials: Callable[[], tuple[str, ...]] = field(default=tuple)
    db: int = 0
    client_name: Optional[str] = None
    timeout: Optional[float] = None  # a reply's
    connect_timeout: Optional[float] = None
    keepalive: bool = False
    keepalive_options: dict[int, Any] = field(default_factory=dict)  # TCP_KEEP* options

    @classmethod
    def of(cls, connection: Any) -> Optional[LinkSettings]:
        """The settings of a redis-py connection (its public attributes, defaults resolved),
        or None when it does something a link does not (a connection class of its own, a
        custom handshake, OCSP checks)."""
        if type(connection) not in _KNOWN or getattr(connection, "redis_connect_func", None):
            return None
        if getattr(connection, "ssl_validate_ocsp", False) or getattr(
                connection, "ssl_validate_ocsp_stapled", False):
            return None
        provider = getattr(connection, "credential_provider", None)
        keepalive = bool(getattr(connection, "socket_keepalive", False))
        options = getattr(connection, "socket_keepalive_options", None)
        connect_timeout = connection.socket_connect_timeout
        return cls(
            locator=getattr(connection, "locator", None),
            address=(str(getattr(connection, "host", "localhost")),
                     int(getattr(connection, "port", 6379))),
            path=getattr(connection, "path", None) or None,
            tls=_tls(connection) if isinstance(connection, SSLConnection) else None,
            credentials=(provider.get_credentials if provider is not None
                         else _given(connection.username, connection.password)),
            db=int(connection.db or 0),
            client_name=connection.client_name,
            timeout=connection.socket_timeout,
            connect_timeout=connect_timeout if connect_timeout is not None
            else connection.socket_timeout,
            keepalive=keepalive,
            keepalive_options=dict(options) if isinstance(options, dict) else {})

    def candidates(self) -> list[Address]:
        """The addresses to try, best first (asks the locator: may ask the Sentinels)."""
        return self.locator.candidates() if self.locator is not None else [self.address]

    def where(self, address: Optional[Address]) -> str:
        """A connection's address for messages."""
        if self.path is not None:
            return f"unix socket: {self.path}"
        host, port = address or self.address
        return f"{host}:{port}"


def _given(username: Optional[str], password: Optional[str]
           ) -> Callable[[], tuple[str, ...]]:
    """AUTH's arguments, as redis-py sends them (none without a user name or password)."""
    if not (username or password):
        return tuple
    given = (username, password or "") if username else (password or "",)
    return lambda: given


_TLS_SETTINGS = ("check_hostname", "cert_reqs", "ssl_include_verify_flags",
                 "ssl_exclude_verify_flags", "certfile", "keyfile", "certificate_password",
                 "ca_certs", "ca_path", "ca_data", "ssl_min_version", "ssl_ciphers")


def _tls(connection: Any) -> Callable[[], ssl.SSLContext]:
    """What builds the TLS context a redis-py ``SSLConnection`` with these settings would use:
    built on the first connect (a missing file then fails the connect, as in redis-py), and
    kept."""
    given: dict[str, Any] = {name: getattr(connection, name, None) for name in _TLS_SETTINGS}

    @functools.cache
    def context() -> ssl.SSLContext:
        built = ssl.create_default_context()
        built.check_hostname = bool(given["check_hostname"])
        built.verify_mode = given["cert_reqs"]
        for flag in given["ssl_include_verify_flags"] or ():
            built.verify_flags |= flag
        for flag in given["ssl_exclude_verify_flags"] or ():
            built.verify_flags &= ~flag
        if given["certfile"] or given["keyfile"]:
            built.load_cert_chain(certfile=given["certfile"], keyfile=given["keyfile"],
                                  password=given["certificate_password"])
        if any(given[name] is not None for name in ("ca_certs", "ca_path", "ca_data")):
            built.load_verify_locations(cafile=given["ca_certs"], capath=given["ca_path"],
                                        cadata=given["ca_data"])
        if given["ssl_min_version"] is not None:
            built.minimum_version = given["ssl_min_version"]
        if given["ssl_ciphers"]:
            built.set_ciphers(given["ssl_ciphers"])
        return built

    return context


class Handshake:
    """What sets a new connection up: ``AUTH``, ``CLIENT SETNAME`` and ``SELECT`` in one
    write (one round trip), and the check of their replies."""

    def __init__(self, settings: LinkSettings) -> None:
        self.auth = tuple(settings.credentials())
        self.rest: list[tuple[Any, ...]] = []
        if settings.client_name:
            self.rest.append(("CLIENT", "SETNAME", settings.client_name))
        if settings.db:
            self.rest.append(("SELECT", settings.db))

    def commands(self) -> list[tuple[Any, ...]]:
        """The commands to send (none: nothing to set up)."""
        return ([("AUTH", *self.auth)] if self.auth else []) + self.rest

    def check(self, replies: list[Any]) -> list[tuple[Any, ...]]:
        """Raise what a refused command means; the commands to send again (an ``AUTH`` with
        a user name to a server older than ACLs: its password alone), else none."""
        if self.auth and isinstance(replies[0], ReplyError):
            message = str(replies[0])
            if "wrong number of arguments" in message and len(self.auth) > 1:
                self.auth = self.auth[-1:]
                return self.commands()
            if any(sign in message for sign in _AUTH_REFUSED):
                raise redis.exceptions.AuthenticationError(message)
            raise reply_exception(message)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply_exception(str(reply))
        return []


def connect_error(exc: OSError, where: str) -> redis.exceptions.RedisError:
    """A failed connect as redis-py reports it."""
    if isinstance(exc, socket.timeout):
        return redis.exceptions.TimeoutError("Timeout connecting to server")
    if exc.errno is not None and exc.strerror:
        return redis.exceptions.ConnectionError(
            f"Error {exc.errno} connecting to {where}. {exc.strerror}.")
    return redis.exceptions.ConnectionError(f"Error connecting to {where}. {exc}.")
