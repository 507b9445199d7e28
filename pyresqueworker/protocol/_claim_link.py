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

import math
import socket
from typing import Any, Callable, Optional

import redis

from ._link_settings import Handshake, LinkSettings, connect_error, reply_exception
from ._locate import Address, learn
from ._resp_parse import new_reader, pack_command
from .redis_errors import RedisUnavailable

__all__ = ["WAIT_SLICE", "ClaimLink"]

#: Seconds one socket call of a link waits before the link asks whether to wait on: a reply
#: is waited for in slices, so a stopping worker need not sit out a whole reply timeout
#: (10 s and more) on a Redis that went silent (see ``ClaimLink.give_up``).
WAIT_SLICE = 0.25


def _never(_waited: float) -> bool:
    return False


class ClaimLink:
    """One socket to Redis for one slot's claims, reconnected through the locator.

    :attr:`sock` is None until :meth:`connect`; :meth:`stale` says the locator learned that
    Redis moved since (reconnect before the next command). Not thread-safe: one slot's.
    ``give_up(seconds_waited)`` is asked between the slices of a long wait for Redis; True
    ends the wait as the reply timeout would.
    """

    def __init__(self, settings: LinkSettings,
                 give_up: Optional[Callable[[float], bool]] = None) -> None:
        self.settings = settings
        self.give_up = give_up or _never
        # The reply timeout in whole slices of about WAIT_SLICE (None: no timeout).
        timeout = settings.timeout
        self.slices: Optional[int] = math.ceil(timeout / WAIT_SLICE) if timeout else None
        self.slice = timeout / self.slices if timeout and self.slices else WAIT_SLICE
        self.sock: Optional[socket.socket] = None
        self.reader: Any = None  # the connection's reply reader (new on each connect)
        self.address: Optional[Address] = None  # where it is connected
        self.generation = -1  # the locator's generation when it connected
        self.connects = 0

    def waited(self, slices: int) -> int:
        """One more slice of a socket call has passed without an answer: the count of slices
        waited so far, or :class:`TimeoutError` once the reply timeout is over or
        ``give_up`` says to stop."""
        slices += 1
        waited = round(slices * self.slice, 3)
        if slices == self.slices or self.give_up(waited):
            raise TimeoutError(f"no reply from Redis in {waited:g} s")
        return slices

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
                commands = handshake.check(self._round_trip(sock, commands))
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
                return _opened(socket.socket(socket.AF_UNIX), settings.path, settings,
                               self.slice), None
            except OSError as exc:
                raise connect_error(exc, settings.where(None)) from exc
        failure: Optional[tuple[OSError, Address]] = None
        for address in settings.candidates():
            try:
                sock = _opened(None, address, settings, self.slice)
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

    def _round_trip(self, sock: socket.socket, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write and read their replies (the handshake's)."""
        send_all(self, sock, b"".join(pack_command(c) for c in commands))
        reader = new_reader()
        replies: list[Any] = []
        slices = 0
        while len(replies) < len(commands):
            reply = reader.gets()
            if reply is False:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    slices = self.waited(slices)
                    continue
                if not data:
                    raise ConnectionError("Connection closed by server.")
                reader.feed(data)
                continue
            replies.append(reply)
        return replies

    def __del__(self) -> None:
        self.disconnect()


def send_all(link: ClaimLink, sock: socket.socket, data: bytes) -> None:
    """``sock.sendall(data)``, its wait sliced as the link's replies are."""
    view: Optional[memoryview] = None
    slices = 0
    while True:
        try:
            sent = sock.send(data if view is None else view)
        except TimeoutError:
            slices = link.waited(slices)
            continue
        if view is None:
            if sent == len(data):  # (nearly always: a command fits the socket's buffer)
                return
            view = memoryview(data)
        view = view[sent:]
        if not view:
            return


def _opened(sock: Optional[socket.socket], address: Any, settings: LinkSettings,
            wait_slice: float) -> socket.socket:
    """A socket connected to ``address`` (a TCP address when ``sock`` is None), TLS on top
    when the settings want it, its calls timed out after ``wait_slice``."""
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
        sock.settimeout(wait_slice)
    except BaseException:
        sock.close()
        raise
    return sock
