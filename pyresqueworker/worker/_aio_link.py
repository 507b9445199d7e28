"""Asyncio connections to Redis for the asyncio execution mode, opened like every other one.

A :class:`AioLink` is one socket on the event loop that sends a list of commands as one
pipeline (one write, one read of all replies). Where Redis is and how to talk to it come from
the process's :class:`~pyresqueworker.protocol.connection.ConnectionFactory`: the link takes the
settings of the factory's connections
(:class:`~pyresqueworker.protocol._link_settings.LinkSettings`: address source, credentials,
database, TLS files) and its :class:`~pyresqueworker.protocol._locate.Locator`, so a Sentinel
failover, a ``MOVED`` redirect or a ``READONLY`` reply seen by any connection of the process
moves these links too.

The link owns its streams: it opens them itself and sends the same set-up as the claim links
of thread slots (:class:`~pyresqueworker.protocol._link_settings.Handshake`); the replies of a
pipeline are then parsed by one hiredis reader, which hands back error replies as values
instead of raising, so one bad reply does not desynchronise the rest.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any, Optional

import redis

from ..protocol._link_settings import Handshake, LinkSettings, connect_error, reply_exception
from ..protocol._locate import Address, SentinelLocator, learn
from ..protocol._resp_parse import ReplyError, new_reader, pack_command
from ..protocol.connection import ConnectionFactory
from ..protocol.redis_errors import RedisUnavailable

__all__ = ["AioLink", "LinkError"]


class LinkError(redis.exceptions.ConnectionError):
    """The link failed; ``sent`` says whether any command may have reached Redis."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class AioLink:
    """One asyncio connection; :meth:`execute` sends a pipeline and returns its replies.

    Not shared by concurrent callers: each user (a claim batch, a queue watcher) owns a link
    while it awaits it. ``timeout`` bounds one pipeline's round trip; past it the connection
    is dropped (Redis gone quiet must not hang a batch of slots for ever).
    """

    def __init__(self, factory: ConnectionFactory, timeout: float) -> None:
        self.timeout = timeout
        self.connects = 0  # bumped on every (re)connect: per-connection state (loaded scripts)
        # The settings of a slot's connection (never connected: only they were wanted).
        template = factory.connect(single_connection_client=True, socket_timeout=timeout,
                                   socket_connect_timeout=5.0)
        settings = LinkSettings.of(template.connection)
        template.close()
        if settings is None:  # (the factory's connections are all of kinds a link knows)
            raise TypeError("the connection factory made a connection a link cannot copy")
        self.settings = settings
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._address: Optional[Address] = None
        self._generation = -1
        self._replies = new_reader()
        self._drop = False
        self._patience = timeout  # a round trip's time, shortened by hurry()
        self._watchdog: Optional[asyncio.TimerHandle] = None  # the round trip's, if one is on

    def hurry(self, seconds: float) -> None:
        """From now on a round trip (the one on, too) is given up on ``seconds`` after it was
        sent: a stopping worker does not wait out the full timeout on a silent Redis."""
        patience, self._patience = self._patience, min(self._patience, seconds)
        timer, writer = self._watchdog, self._writer
        if timer is not None and writer is not None:
            sent_at = timer.when() - patience
            if sent_at + self._patience < timer.when():
                timer.cancel()
                self._watchdog = asyncio.get_running_loop().call_at(
                    sent_at + self._patience, writer.transport.abort)

    async def _ensure(self) -> Streams:
        locator = self.settings.locator
        stale = locator is not None and self._generation != locator.generation
        if self._writer is not None and (stale or self._writer.is_closing()):
            await self.close()
        if self._writer is None or self._reader is None:
            generation = locator.generation if locator is not None else -1
            reader, writer = await self._open()
            try:
                await asyncio.wait_for(self._handshake(reader, writer),
                                       self.settings.connect_timeout)
            except BaseException:
                writer.close()
                raise
            self._reader, self._writer, self._generation = reader, writer, generation
            self._replies = new_reader()
            self.connects += 1
        return self._reader, self._writer

    async def _open(self) -> Streams:
        settings = self.settings
        timeout = settings.connect_timeout
        if settings.path is not None:
            try:
                return await asyncio.wait_for(asyncio.open_unix_connection(settings.path),
                                              timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise _connect_error(exc, settings.where(None)) from exc
        locator = settings.locator
        if isinstance(locator, SentinelLocator):  # asks the Sentinels: blocking I/O, off-loop
            candidates = await asyncio.get_running_loop().run_in_executor(
                None, locator.candidates)
        else:
            candidates = settings.candidates()
        failure: Optional[tuple[BaseException, Address]] = None
        for host, port in candidates:
            try:
                tls = settings.tls() if settings.tls is not None else None
                streams = await asyncio.wait_for(asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls is not None else None),
                    timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                if locator is not None:
                    locator.unreachable((host, port))
                failure = (exc, (host, port))
                continue
            sock = streams[1].get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if settings.keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    for option, value in settings.keepalive_options.items():
                        sock.setsockopt(socket.IPPROTO_TCP, option, value)
            self._address = (host, port)
            return streams
        if failure is None:
            raise redis.exceptions.ConnectionError("no Redis address to connect to")
        raise _connect_error(failure[0], settings.where(failure[1])) from failure[0]

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                         ) -> None:
        handshake = Handshake(self.settings)
        commands = handshake.commands()
        while commands:
            writer.write(b"".join(pack_command(c) for c in commands))
            commands = handshake.check(await _read(reader, new_reader(), len(commands)))

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write; return every reply. An error reply is returned as
        a ``ResponseError`` (a transient one, ``OOM``/``READONLY``/``MOVED``..., as
        :class:`~pyresqueworker.protocol.redis_errors.RedisUnavailable`,
        and the link then reconnects).
        Raises :class:`LinkError` when the connection fails."""
        try:
            reader, writer = await self._ensure()
        except (OSError, ValueError, asyncio.TimeoutError, redis.exceptions.RedisError) as exc:
            await self.close()
            raise LinkError(f"cannot connect to Redis: {exc}", sent=False) from None
        loop = asyncio.get_running_loop()
        # A watchdog, not wait_for: no extra task per round trip.
        self._watchdog = loop.call_later(self._patience, writer.transport.abort)
        try:
            writer.write(b"".join(pack_command(tuple(c)) for c in commands))
            replies = await _read(reader, self._replies, len(commands))
        except (OSError, ValueError, asyncio.IncompleteReadError, RuntimeError) as exc:
            await self.close()
            raise LinkError(f"lost the connection to Redis: {exc or type(exc).__name__}",
                            sent=True) from None
        finally:
            watchdog, self._watchdog = self._watchdog, None  # (hurry may have replaced it)
            if watchdog is not None:
                watchdog.cancel()
        results = [self._error(r) if isinstance(r, ReplyError) else r for r in replies]
        if self._drop:
            self._drop = False
            await self.close()
        return results

    def _error(self, reply: ReplyError) -> Exception:
        exc = reply_exception(str(reply))
        if isinstance(exc, RedisUnavailable):
            locator = self.settings.locator
            if locator is not None:  # learn where Redis went, as every other connection does
                learn(locator, exc.code, str(exc), (self._address or self.settings.address)[0])
            self._drop = True  # reconnect (to wherever the locator now says) before next use
        return exc

    async def close(self) -> None:
        """Drop the connection (the next :meth:`execute` reconnects)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()  # (not waited for: closing a broken socket may hang or fail)


async def _read(reader: asyncio.StreamReader, parser: Any, count: int) -> list[Any]:
    replies: list[Any] = []
    while len(replies) < count:
        reply = parser.gets()
        if reply is False:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("connection closed by Redis")
            parser.feed(data)
            continue
        replies.append(reply)
    return replies


def _connect_error(exc: BaseException, where: str) -> redis.exceptions.RedisError:
    if isinstance(exc, OSError):
        return connect_error(exc, where)
    return redis.exceptions.TimeoutError("Timeout connecting to server")
