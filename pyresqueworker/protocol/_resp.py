"""A lean request/reply path for the per-job claim call.

redis-py spends about 20 µs of Python on every command (retry wrapper, option parsing,
response callbacks) — as much as Redis spends running the whole claim script. The claim is
one command per job, so a slot sends it on a socket of its own
(:class:`~pyresqueworker.protocol._claim_link.ClaimLink`, opened with the settings of the
slot's redis-py connection) and parses the reply with hiredis directly. redis-py keeps the
slot's other commands (loading the scripts among them), and a client without a connection of
its own (a pool's) keeps all.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, Optional

import redis

from ..log import logger
from ._claim_link import ClaimLink, send_all
from ._link_settings import LinkSettings
from ._resp_parse import ReplyError, pack_command
from ._spin import ReplySpin

__all__ = ["FastCaller", "Joined", "LuaScript", "ScriptRun", "command"]

_RECV_SIZE, _LARGE_RECV_SIZE = 1 << 16, 1 << 20
#: How many times a call sent ahead that Redis refused is sent again with later requests.
AHEAD_TRIES = 1000


class Joined(NamedTuple):
    """A command argument sent as the concatenation of ``parts``, which are never joined in
    memory: a worker key holding a megabyte payload is written without copying it."""

    parts: tuple[bytes, ...]


def _frames(commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """``commands`` in RESP, as buffers to send in order (a :class:`Joined` one per part)."""
    frames: list[bytes] = []
    for args in commands:
        if not any(isinstance(arg, Joined) for arg in args):
            frames.append(pack_command(args))
            continue
        pending = [b"*%d\r\n" % len(args)]
        for arg in args:
            if isinstance(arg, Joined):
                pending.append(b"$%d\r\n" % sum(map(len, arg.parts)))
                frames += [b"".join(pending), *arg.parts]
                pending = [b"\r\n"]
            else:
                data = arg if isinstance(arg, bytes) else str(arg).encode()
                pending.append(b"$%d\r\n%s\r\n" % (len(data), data))
        frames.append(b"".join(pending))
    return frames


def _send_frames(sock: socket.socket, frames: list[bytes], link: Optional[ClaimLink] = None
                 ) -> None:
    """Send ``frames`` in order with as few copies as the socket allows. ``link``: whose
    socket it is, asked when a send waits (see ClaimLink.waited); without one a socket
    timeout is an error."""
    if len(frames) == 1 or isinstance(sock, ssl.SSLSocket):  # (TLS sockets have no sendmsg)
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        if link is None:
            sock.sendall(data)
        else:
            send_all(link, sock, data)
        return
    views = [memoryview(frame) for frame in frames if frame]
    slices = 0
    while views:
        try:
            sent = sock.sendmsg(views[:64])
        except TimeoutError:
            if link is None:
                raise
            slices = link.waited(slices)
            continue
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]


class FastCaller:
    """Runs a slot's claim commands; with a ``spin`` budget (seconds) it polls for each reply
    before sleeping on it (see ReplySpin).

    A ``single_connection_client`` (a slot's) gets a :class:`ClaimLink` of its own, made with
    its connection's settings and connected on first use; for other clients (shared pools,
    or settings a link does not reproduce) calls go through redis-py. ``give_up``: see
    :class:`ClaimLink`.
    """

    def __init__(self, client: redis.Redis, spin: float = 0.0,
                 give_up: Optional[Callable[[float], bool]] = None) -> None:
        self.client = client
        own = client.connection  # (None for a pool's client)
        settings = LinkSettings.of(own) if own is not None else None
        self.connection: Optional[ClaimLink] = (
            ClaimLink(settings, give_up) if settings else None)
        # Made once a reply fills a whole read (large payloads): read into it from then on,
        # without a new bytes object per read. (Not before: an asyncio slot's caller may never
        # read, and there can be thousands.)
        self._buffer: Optional[bytearray] = None
        self.spin: Optional[ReplySpin] = ReplySpin(spin) if spin > 0 else None
        # Work to do once the next request is sent, while its reply is on its way (run once,
        # even if the send fails; it must not raise).
        self.after_send: Optional[Callable[[], None]] = None
        # Script calls that go out ahead of the next request, in the same write (a tracked
        # job's end, before the claim that finishes it): see :meth:`send_ahead`. Which of their
        # scripts this connection loaded: (the link's connect count, their digests).
        self.ahead: tuple[ScriptRun, ...] = ()
        self._ahead_loaded: tuple[int, set[str]] = (-1, set())
        self._ahead_tries: dict[ScriptRun, int] = {}  # refusals of calls sent ahead

    @property
    def pipelines(self) -> bool:
        """Whether :meth:`many` works: the calls go on a link of this caller's own."""
        return self.connection is not None

    def __call__(self, *args: Any) -> Any:
        if self.connection is None:
            self.run_after_send()
            for run in self.ahead:  # (no link of our own: each in its own round trip)
                try:
                    run.script(self.client, run.keys, run.args)
                except redis.exceptions.ResponseError as exc:
                    _log_ahead_error(run, exc)
            self.ahead = ()
            return self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        reply = self._exchange([pack_command(args)], 1)[0]  # (one command: packed in C)
        if isinstance(reply, ReplyError):
            raise self.connection.error(str(reply))
        return reply

    def many(self, commands: Sequence[tuple[Any, ...]], *, same_connection: bool = False
             ) -> list[Any]:
        """Send ``commands`` in one write on this caller's link and read their replies
        (one round trip; connection state such as WATCH holds across calls). An error reply
        comes back as a :class:`~pyresqueworker.protocol._resp_parse.ReplyError` in its
        place; only :attr:`pipelines` callers. An argument may be :class:`Joined`.
        ``same_connection``: raise ``WatchError`` rather than send on a connection other than
        the last call's (a ``WATCH`` died with it)."""
        return self._exchange(_frames(commands), len(commands), same_connection)

    def send_ahead(self, runs: tuple[ScriptRun, ...]) -> None:
        """Send the script calls ``runs`` ahead of the next request, in its write (their
        scripts loaded first on a new connection). They must be safe to run twice (a lost
        reply sends them again); an error reply to one is logged, never raised, so the
        request's own reply is always read; a script the server lost is sent again in full."""
        self.ahead = (*self.ahead, *(run for run in runs if run not in self.ahead))

    def _ahead_commands(self, link: ClaimLink) -> list[tuple[Any, ...]]:
        """The loads this connection still needs, then the ahead calls as EVALSHA."""
        connects, loaded = self._ahead_loaded
        if connects != link.connects:  # a new connection: maybe a restarted Redis
            loaded = set()
            self._ahead_loaded = (link.connects, loaded)
        commands: list[tuple[Any, ...]] = []
        for run in self.ahead:
            if run.script.sha not in loaded:
                loaded.add(run.script.sha)
                commands.append(("SCRIPT", "LOAD", run.script.source))
        return commands + [run.evalsha() for run in self.ahead]

    def _exchange(self, frames: list[bytes], count: int, same_connection: bool = False
                  ) -> list[Any]:
        link = self.connection
        assert link is not None
        ahead = self.ahead
        before: list[tuple[Any, ...]] = []
        sock = link.sock
        if sock is None or link.stale():
            if same_connection:
                raise redis.exceptions.WatchError("the connection changed since WATCH")
            sock = link.connect()
        reader = link.reader
        if ahead:
            before = self._ahead_commands(link)
            frames = [*_frames(before), *frames]
            count += len(before)
        replies: list[Any] = []
        try:
            try:
                _send_frames(sock, frames, link)
            finally:
                self.run_after_send()
            spin = self.spin
            while len(replies) < count:
                reply = reader.gets()
                while reply is False:
                    if spin is not None:  # (each read: a large reply comes in several)
                        spin.wait(sock)
                    self._receive(sock, reader)
                    reply = reader.gets()
                replies.append(reply)
        except (OSError, ValueError) as exc:  # (ValueError: a reply that is not RESP)
            link.disconnect()
            raise redis.exceptions.ConnectionError(f"Error while talking to Redis: {exc}") from None
        if ahead:
            settled = replies[len(before) - len(ahead):len(before)]
            del replies[:len(before)]
            self._settle_ahead(ahead, settled)
        return replies

    def _settle_ahead(self, ahead: tuple[ScriptRun, ...], replies: list[Any]) -> None:
        """A script the server lost is sent again whole, now; a call refused otherwise (OOM,
        READONLY: it may pass while the request after it did not) rides on the next request
        again, up to :data:`AHEAD_TRIES` times."""
        self.ahead = ()
        lost = [run for run, reply in zip(ahead, replies)
                if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT")]
        if lost:
            self._ahead_loaded[1].difference_update(run.script.sha for run in lost)
            replies = [*replies, *self._exchange(_frames([r.eval_args() for r in lost]),
                                                 len(lost))]
            ahead = (*ahead, *lost)
        again = tuple(run for run, reply in zip(ahead, replies)
                      if isinstance(reply, ReplyError) and not str(reply).startswith("NOSCRIPT"))
        for run in again:
            tries = self._ahead_tries.get(run, 0) + 1
            self._ahead_tries[run] = tries
            _log_ahead_error(run, replies[ahead.index(run)], tries)
        self.ahead = tuple(run for run in again if self._ahead_tries[run] < AHEAD_TRIES)
        if not self.ahead:
            self._ahead_tries.clear()

    def defer(self, work: Callable[[], None]) -> None:
        """Run ``work`` once the next request is sent (as :attr:`after_send`); work still
        waiting from before runs now, so work is done in order."""
        self.run_after_send()
        self.after_send = work

    def run_after_send(self) -> None:
        """Run and clear :attr:`after_send` now, if set (a caller that sends nothing more)."""
        work, self.after_send = self.after_send, None
        if work is not None:
            work()

    def _receive(self, sock: socket.socket, reader: Any) -> None:
        slices = 0
        while True:
            try:
                buffer = self._buffer
                if buffer is not None:
                    size = sock.recv_into(buffer)
                    if not size:
                        raise ConnectionError("Connection closed by server.")
                    reader.feed(buffer, 0, size)
                    return
                data = sock.recv(_RECV_SIZE)
            except TimeoutError:  # one slice of the wait (see ClaimLink.waited)
                assert self.connection is not None
                slices = self.connection.waited(slices)
                continue
            if not data:
                raise ConnectionError("Connection closed by server.")
            reader.feed(data)
            if len(data) == _RECV_SIZE:
                self._buffer = bytearray(_LARGE_RECV_SIZE)
            return

    @staticmethod
    def is_error(reply: Any) -> bool:
        """Whether ``reply`` from :meth:`many` is an error reply."""
        return isinstance(reply, ReplyError)

    def raise_for(self, reply: Any) -> Any:
        """``reply`` from :meth:`many`, raised as the exception it is if it is an error."""
        if isinstance(reply, ReplyError):
            assert self.connection is not None
            raise self.connection.error(str(reply))
        return reply


def _log_ahead_error(run: ScriptRun, error: Exception, tries: int = 1) -> None:
    logger.error("a script call sent ahead of a claim failed", extra={
        "script": run.script.sha[:12], "error": str(error), "tries": tries,
        "next": "sent again with the next call" if tries < AHEAD_TRIES else "given up"})


def command(conn: redis.Redis, *args: Any) -> Any:
    """``execute_command`` (untyped in redis-py) for the few raw commands we send."""
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


class LuaScript:
    """EVALSHA with a reload when the server lost its script cache (restart, SCRIPT FLUSH)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        # Pools we loaded the script through. Loading before the first EVALSHA (rather than
        # after a NOSCRIPT error) matters for Redis-protocol servers that drop the connection
        # on an error reply, such as fakeredis's TCP server.
        self._loaded: weakref.WeakSet[Any] = weakref.WeakSet()

    def __call__(
        self,
        conn: redis.Redis,
        keys: Sequence[str],
        args: Sequence[Any],
        call: Optional[Callable[..., Any]] = None,
    ) -> Any:
        send = call or partial(command, conn)
        self.load_once(conn, send)
        try:
            return send(*self.evalsha(keys, args))
        except redis.exceptions.NoScriptError:
            send("SCRIPT", "LOAD", self.source)
            return send(*self.evalsha(keys, args))

    def load_once(self, conn: redis.Redis, call: Optional[Callable[..., Any]] = None) -> None:
        """Load the script into ``conn``'s Redis unless it already was; sent with ``call``
        when given (a slot's claim link, so the load waits as its claims do)."""
        if conn.connection_pool not in self._loaded:
            (call or partial(command, conn))("SCRIPT", "LOAD", self.source)
            self._loaded.add(conn.connection_pool)

    def evalsha(self, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The ``EVALSHA`` command for these keys and arguments (to send in a batch)."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def run(self, keys: Sequence[Any], args: Sequence[Any]) -> ScriptRun:
        """This script's call with ``keys`` and ``args``, as a value (to send later)."""
        return ScriptRun(self, tuple(keys), tuple(args))

    async def acall(self, conn: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The same call on a ``redis.asyncio.Redis``."""
        if conn.connection_pool not in self._loaded:
            await conn.script_load(self.source)
            self._loaded.add(conn.connection_pool)
        try:
            return await conn.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await conn.script_load(self.source)
            return await conn.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


class ScriptRun(NamedTuple):
    """One call of a :class:`LuaScript`, kept to be sent later (see ``FastCaller.send_ahead``)."""

    script: LuaScript
    keys: tuple[Any, ...]
    args: tuple[Any, ...]

    def evalsha(self) -> tuple[Any, ...]:
        return self.script.evalsha(self.keys, self.args)

    def eval_args(self) -> tuple[Any, ...]:
        """The call as ``EVAL`` with the script's text (inside a ``MULTI``, or once the server
        lost the script)."""
        return ("EVAL", self.script.source, len(self.keys), *self.keys, *self.args)
