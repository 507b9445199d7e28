"""Asyncio connections to Redis for the asyncio execution mode, opened like every other one.

A :class:`AioLink` is one socket on the event loop that sends a list of commands as one
pipeline (one write, one read of all replies). Where Redis is and how to talk to it come from
the process's :class:`~pyresqueworker.protocol.connection.ConnectionFactory`: the link takes the
factory's connection settings (address source, credentials, database, TLS files) and its
:class:`~pyresqueworker.protocol._locate.Locator`, so a Sentinel failover, a ``MOVED`` redirect or a
``READONLY`` reply seen by any connection of the process moves these links too.

redis-py's asyncio connection does the connecting (TCP or TLS, ``AUTH``, ``SELECT``, client
name); the replies of a pipeline are then parsed by one hiredis reader, which hands back error
replies as values instead of raising, so one bad reply does not desynchronise the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Optional

import hiredis
import redis
import redis.asyncio
import redis.asyncio.connection as aio_connection
from redis.asyncio.retry import Retry as AioRetry
from redis.backoff import NoBackoff

from ..protocol._locate import LocatedSSLConnection, Locator, SentinelLocator
from ..protocol.connection import ConnectionFactory
from ..protocol.redis_errors import RedisUnavailable, transient_code

__all__ = ["AioLink", "LinkError"]

# Sync connection settings that mean nothing to (or differ in) redis-py's asyncio connection.
_NOT_ASYNC = ("locator", "retry", "health_check_interval", "connection_class", "ssl")


class LinkError(redis.exceptions.ConnectionError):
    """The link failed; ``sent`` says whether any command may have reached Redis."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class _AioLocated:
    """Mixin for redis-py asyncio connections: the address comes from the factory's locator."""

    locator: Locator
    host: str
    port: int

    def __init__(self, *args: Any, locator: Locator, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locator = locator
        self.generation = -1

    async def _connect(self) -> None:
        locator = self.locator
        if isinstance(locator, SentinelLocator):  # asks the Sentinels: blocking I/O, off-loop
            candidates = await asyncio.get_running_loop().run_in_executor(
                None, locator.candidates)
        else:
            candidates = locator.candidates()
        failure: Optional[BaseException] = None
        for host, port in candidates:
            self.host, self.port = host, port
            try:
                await super()._connect()  # type: ignore[misc]
            except (OSError, asyncio.TimeoutError) as exc:
                locator.unreachable((host, port))
                failure = exc
                continue
            self.generation = locator.generation
            return
        raise failure or OSError("no Redis address to connect to")


class _AioLocatedConnection(_AioLocated, aio_connection.Connection):
    pass


class _AioLocatedSSLConnection(_AioLocated, aio_connection.SSLConnection):
    pass


class AioLink:
    """One asyncio connection; :meth:`execute` sends a pipeline and returns its replies.

    Not shared by concurrent callers: each user (a claim batch, a queue watcher) owns a link
    while it awaits it. ``timeout`` bounds one pipeline's round trip; past it the connection
    is dropped (Redis gone quiet must not hang a batch of slots for ever).
    """

    def __init__(self, factory: ConnectionFactory, timeout: float) -> None:
        self.timeout = timeout
        self.connects = 0  # bumped on every (re)connect: per-connection state (loaded scripts)
        template = factory.connect(single_connection_client=True, socket_timeout=timeout,
                                   socket_connect_timeout=5.0)
        pool = template.connection_pool
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in _NOT_ASYNC}
        kwargs["retry"] = AioRetry(NoBackoff(), 0)  # the callers back off themselves
        self._locator: Optional[Locator] = pool.connection_kwargs.get("locator")
        self._conn: aio_connection.AbstractConnection
        if self._locator is None:  # unix:// (no address to locate)
            self._conn = aio_connection.UnixDomainSocketConnection(**kwargs)
        elif issubclass(pool.connection_class, LocatedSSLConnection):
            self._conn = _AioLocatedSSLConnection(locator=self._locator, **kwargs)
        else:
            self._conn = _AioLocatedConnection(locator=self._locator, **kwargs)
        template.close()  # never connected: only its settings were wanted
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._replies = hiredis.Reader()
        self._drop = False

    async def _ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        conn = self._conn
        stale = isinstance(conn, _AioLocated) and self._locator is not None and (
            conn.generation != self._locator.generation)
        if self._writer is not None and (stale or self._writer.is_closing()):
            await self.close()
        if self._writer is None or self._reader is None:
            await conn.connect()  # type: ignore[no-untyped-call,unused-ignore]
            # After redis-py's handshake the streams are ours: pipelines go straight to them.
            reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
            if reader is None or writer is None:
                raise LinkError("redis-py's asyncio connection has no streams", sent=False)
            self._reader, self._writer = reader, writer
            self._replies = hiredis.Reader()
            self.connects += 1
        return self._reader, self._writer

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write; return every reply. An error reply is returned as
        a ``ResponseError`` (a transient one, ``OOM``/``READONLY``/``MOVED``..., as
        :class:`~pyresqueworker.protocol.redis_errors.RedisUnavailable`,
        and the link then reconnects).
        Raises :class:`LinkError` when the connection fails."""
        try:
            reader, writer = await self._ensure()
        except (OSError, asyncio.TimeoutError, redis.exceptions.RedisError) as exc:
            await self.close()
            raise LinkError(f"cannot connect to Redis: {exc}", sent=False) from None
        loop = asyncio.get_running_loop()
        # A watchdog, not wait_for: no extra task per round trip.
        timer = loop.call_later(self.timeout, writer.transport.abort)
        try:
            writer.write(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
            replies: list[Any] = []
            parser = self._replies
            while len(replies) < len(commands):
                reply = parser.gets()
                if reply is False:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("connection closed by Redis")
                    parser.feed(data)
                    continue
                replies.append(reply)
        except (OSError, ValueError, asyncio.IncompleteReadError, RuntimeError) as exc:
            await self.close()
            raise LinkError(f"lost the connection to Redis: {exc or type(exc).__name__}",
                            sent=True) from None
        finally:
            timer.cancel()
        results = [self._error(r) if isinstance(r, hiredis.ReplyError) else r for r in replies]
        if self._drop:
            self._drop = False
            await self.close()
        return results

    def _error(self, reply: hiredis.ReplyError) -> Exception:
        message = str(reply)
        code = transient_code(message)
        if code is None:
            kind = (redis.exceptions.NoScriptError if message.startswith("NOSCRIPT")
                    else redis.exceptions.ResponseError)
            return kind(message)
        if self._locator is not None:  # learn where Redis went, as located sync connections do
            if code == "MOVED":
                host, _, port = message.split()[-1].rpartition(":")
                if port.isdigit():
                    self._locator.moved((host or self._conn_host(), int(port)))
            elif code in ("READONLY", "MASTERDOWN"):
                self._locator.refresh()
        self._drop = True  # reconnect (to wherever the locator now says) before the next use
        return RedisUnavailable(message if message.startswith(code) else f"{code} {message}",
                                code)

    def _conn_host(self) -> str:
        return str(getattr(self._conn, "host", "localhost"))

    async def close(self) -> None:
        """Drop the connection (the next :meth:`execute` reconnects)."""
        self._reader = self._writer = None
        try:
            await self._conn.disconnect(nowait=True)
        except Exception:  # closing a broken socket may fail; it is gone either way
            pass
