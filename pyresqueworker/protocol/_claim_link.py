"""The claim's own connection: a socket we open, set up and read ourselves.

A slot's claim is one command per job, and redis-py spends about 20 µs of Python on every
command, as much as Redis spends running the claim. So the claim traffic does not go through
redis-py: :class:`ClaimLink` opens its socket as the slot's redis-py connection would (see
:mod:`pyresqueworker.protocol._link_settings`: the same address, found by the same
:class:`~pyresqueworker.protocol._locate.Locator`, and the same set-up), and
:class:`~pyresqueworker.protocol._resp.FastCaller` writes commands to it and parses the
replies with hiredis (:mod:`pyresqueworker.protocol._resp_parse`). redis-py stays for
everything else.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

import redis

from ._link_settings import Handshake, LinkSettings, connect_error, reply_exception
from ._locate import Address, learn
from ._resp_parse import new_reader, pack_command
from .redis_errors import RedisUnavailable

__all__ = ["ClaimLink"]


class ClaimLink:
    """One socket to Redis for one slot's claims, reconnected through the locator.

    :attr:`sock` is None until :meth:`connect`; :meth:`stale` says the locator learned that
    Redis moved since (reconnect before the next command). Not thread-safe: one slot's.
    """

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self.sock: Optional[socket.socket] = None
        self.reader: Any = None  # the connection's reply reader (new on each connect)
        self.address: Optional[Address] = None  # where it is connected
        self.generation = -1  # the locator's generation when it connected
        self.connects = 0

    def stale(self) -> bool:
        """Whether Redis moved since this connected."""
        locator = self.settings.locator
        return locator is not None and locator.generation != self.generation

    def connect(self) -> socket.socket:
        """A new connection (the old one dropped), set up and ready for commands."""
        self.disconnect()
        settings = self.settings
        locator = settings.locator
        generation = locator.generation if locator is not None else -1
        sock, address = self._open()
        try:
            handshake = Handshake(settings)
            commands = handshake.commands()
            while commands:
                commands = handshake.check(_round_trip(sock, commands))
        except (OSError, ValueError) as exc:  # (ValueError: not RESP)
            sock.close()
            raise redis.exceptions.ConnectionError(
                f"Error while setting up the connection to {settings.where(address)}: {exc}"
            ) from exc
        except BaseException:
            sock.close()
            raise
        self.sock, self.address, self.generation = sock, address, generation
        self.reader = new_reader()
        self.connects += 1
        return sock

    def _open(self) -> tuple[socket.socket, Optional[Address]]:
        settings = self.settings
        if settings.path is not None:
            try:
                return _opened(socket.socket(socket.AF_UNIX), settings.path, settings), None
            except OSError as exc:
                raise connect_error(exc, settings.where(None)) from exc
        failure: Optional[tuple[OSError, Address]] = None
        for address in settings.candidates():
            try:
                sock = _opened(None, address, settings)
            except OSError as exc:
                if settings.locator is not None:
                    settings.locator.unreachable(address)
                failure = (exc, address)
                continue
            return sock, address
        if failure is None:
            raise redis.exceptions.ConnectionError("no Redis address to connect to")
        raise connect_error(failure[0], settings.where(failure[1])) from failure[0]

    def disconnect(self) -> None:
        """Close the socket, if open (the next command reconnects)."""
        sock, self.sock, self.reader = self.sock, None, None
        if sock is not None:
            try:
                sock.close()
            except OSError:  # already broken: it is gone either way
                pass

    def error(self, message: str) -> Exception:
        """The exception for an error reply; a transient one also drops the connection and
        tells the locator what it says about where Redis is."""
        exc = reply_exception(message)
        if isinstance(exc, RedisUnavailable):
            if self.settings.locator is not None:
                learn(self.settings.locator, exc.code, str(exc),
                      (self.address or self.settings.address)[0])
            self.disconnect()
        return exc

    def __del__(self) -> None:
        self.disconnect()


def _opened(sock: Optional[socket.socket], address: Any, settings: LinkSettings
            ) -> socket.socket:
    """A socket connected to ``address`` (a TCP address when ``sock`` is None), TLS on top
    when the settings want it, with the reply timeout set."""
    if sock is None:
        sock = socket.create_connection(address, settings.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if settings.keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in settings.keepalive_options.items():
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    else:
        sock.settimeout(settings.connect_timeout)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
    try:
        if settings.tls is not None:
            sock = settings.tls().wrap_socket(sock, server_hostname=address[0])
        sock.settimeout(settings.timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def _round_trip(sock: socket.socket, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write and read their replies (the handshake's)."""
    sock.sendall(b"".join(pack_command(c) for c in commands))
    reader = new_reader()
    replies: list[Any] = []
    while len(replies) < len(commands):
        reply = reader.gets()
        if reply is False:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("Connection closed by server.")
            reader.feed(data)
            continue
        replies.append(reply)
    return replies
