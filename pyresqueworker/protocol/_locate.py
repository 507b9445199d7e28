"""Where Redis is right now: connections that ask on every (re)connect, and follow redirects.

redis-py resolves a Sentinel master only in its own ``connect()``; a dropped connection that
reconnects from inside ``send_packed_command`` dials the address it had, so a long-lived
connection can keep calling a dead or demoted master. Here the address is a
:class:`Locator`'s answer, set as the connection's public ``host``/``port`` in the public
method every (re)connect of redis-py goes through (``connect_check_health`` since redis-py 6,
``connect`` before). The claim connections of :mod:`pyresqueworker.protocol._claim_link` ask
the same locator.

* :class:`NodeLocator` (``redis://`` and ``redis+cluster://``): seed addresses, tried in
  turn; a ``MOVED`` reply (a cluster node that does not own our hash slot) redirects every
  connection of the locator to the owner.
* :class:`SentinelLocator` (``redis+sentinel://``): asks the Sentinels for the master on each
  connect; ``READONLY`` (a demoted master) forces the question again. A
  :class:`~pyresqueworker.protocol._failover_watch.FailoverWatch`
  can tell it of a failover the moment
  Sentinel starts one, so a worker stops writing to a master that is about to be demoted.

Every connection remembers the locator's ``generation`` when it connected; when the locator
learns that Redis moved, it bumps the generation and each connection reconnects before its
next command.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

import redis
from redis.connection import Connection, SSLConnection
from redis.sentinel import Sentinel

from .redis_errors import RedisUnavailable, transient_code

__all__ = [
    "Address", "LocatedConnection", "LocatedSSLConnection", "Locator", "NodeLocator",
    "SentinelLocator", "learn", "unreachable",
]

Address = tuple[str, int]


class Locator:
    """Where connections go; shared by every connection of one factory."""

    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()
        self._hold_until = 0.0

    def candidates(self) -> list[Address]:
        """Addresses to try, best first."""
        raise NotImplementedError

    def unreachable(self, address: Address) -> None:
        """A connect to ``address`` failed."""

    def moved(self, address: Address) -> None:
        """A ``MOVED`` reply named ``address`` as the owner of our keys."""

    def refresh(self) -> None:
        """Redis may be elsewhere now (a demoted master): every connection reconnects."""
        with self._lock:
            self.generation += 1

    # A failover in progress: no writes until the new master is known (see FailoverWatch).
    def hold(self, seconds: float) -> None:
        self._hold_until = time.monotonic() + seconds

    def release(self) -> None:
        self._hold_until = 0.0

    def holding(self) -> bool:
        return self._hold_until > 0.0 and time.monotonic() < self._hold_until


class NodeLocator(Locator):
    """Fixed seed addresses; ``MOVED`` redirects win until the redirect target fails."""

    def __init__(self, seeds: list[Address]) -> None:
        super().__init__()
        self.seeds = list(seeds)
        self._redirect: Optional[Address] = None
        self._first = 0  # the seed that answered last, tried first next time

    def candidates(self) -> list[Address]:
        ordered = self.seeds[self._first:] + self.seeds[:self._first]
        redirect = self._redirect
        return [redirect, *(a for a in ordered if a != redirect)] if redirect else ordered

    def unreachable(self, address: Address) -> None:
        with self._lock:
            if address == self._redirect:
                self._redirect = None
            elif address in self.seeds and len(self.seeds) > 1:
                self._first = (self.seeds.index(address) + 1) % len(self.seeds)

    def moved(self, address: Address) -> None:
        with self._lock:
            if address != self._redirect:
                self._redirect = address
                self.generation += 1


class SentinelLocator(Locator):
    """The master of one Sentinel service, asked on every connect."""

    def __init__(self, sentinel: Sentinel, service: str) -> None:
        super().__init__()
        self.sentinel = sentinel
        self.service = service
        self._promoted: Optional[Address] = None  # announced by FailoverWatch, not yet by all

    def candidates(self) -> list[Address]:
        promoted = self._promoted
        if promoted is not None:
            return [promoted]
        host, port = self.sentinel.discover_master(self.service)  # type: ignore[no-untyped-call,unused-ignore]
        return [(str(host), int(port))]

    def unreachable(self, address: Address) -> None:
        if address == self._promoted:
            self._promoted = None

    def promoted(self, address: Optional[Address]) -> None:
        """Sentinel promoted ``address`` (None: ask Sentinel again); reconnect everything."""
        with self._lock:
            self._promoted = address
            self.generation += 1
        self.release()


def learn(locator: Locator, code: str, message: str, host: str) -> None:
    """What a transient reply (``code``, from a connection to ``host``) says about where Redis
    is: ``MOVED`` names the owner of our keys, ``READONLY``/``MASTERDOWN`` a master that is no
    longer one (ask again)."""
    if code == "MOVED":
        target_host, _, port = message.split()[-1].rpartition(":")
        if port.isdigit():
            locator.moved((target_host or host, int(port)))
    elif code in ("READONLY", "MASTERDOWN"):
        locator.refresh()


def unreachable(exc: BaseException) -> bool:
    """Whether a connect failed for want of a usable server at that address (refused, timed
    out, cut during the handshake) rather than for what the server answered."""
    return (isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
            and not isinstance(exc, (redis.exceptions.AuthenticationError, RedisUnavailable)))


# redis-py 6 added connect_check_health, which connect() and every reconnect go through;
# before it, they all went through connect(). (Version 8 can also retry the socket's connect
# inside it: turned off below and retried around a pass over every candidate instead.)
_CHECK_HEALTH = hasattr(Connection, "connect_check_health")
_INNER_RETRY = _CHECK_HEALTH and (
    "retry_socket_connect" in inspect.signature(Connection.connect_check_health).parameters)


class _Located:
    """Mixin for redis-py connection classes: the address comes from a :class:`Locator`."""

    locator: Locator
    host: str
    port: int
    retry: Any

    def __init__(self, *args: Any, locator: Locator, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locator = locator
        self.located_generation = -1
        self.located = False  # connected (set by locate, cleared by disconnect)

    if _CHECK_HEALTH:
        def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
            """Connect (redis-py >= 6: every connect goes through here) to the locator's
            answer."""
            if self.located:
                return
            step = super().connect_check_health  # type: ignore[misc]
            if not _INNER_RETRY:
                self.locate(step, *args, **kwargs)
                return
            again = kwargs.pop("retry_socket_connect", True)
            kwargs["retry_socket_connect"] = False
            if not again:
                self.locate(step, *args, **kwargs)
                return
            self.retry.call_with_retry(lambda: self.locate(step, *args, **kwargs),
                                       lambda error: self.disconnect())
    else:  # pragma: no cover - redis-py < 6
        def connect(self) -> None:
            """Connect (redis-py < 6: every connect goes through here) to the locator's
            answer."""
            if not self.located:
                self.locate(super().connect)  # type: ignore[misc]

    def locate(self, step: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run redis-py's connect ``step`` for each address the locator gives until one
        answers."""
        generation = self.locator.generation
        failure: Optional[BaseException] = None
        for host, port in self.locator.candidates():
            self.host, self.port = host, port
            try:
                step(*args, **kwargs)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                self.locator.unreachable((host, port))
                failure = exc
                continue
            self.located, self.located_generation = True, generation
            return
        if failure is not None:
            raise failure
        raise redis.exceptions.ConnectionError("no Redis address to connect to")

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        """Close the socket (redis-py drops every connection through here)."""
        self.located = False
        super().disconnect(*args, **kwargs)  # type: ignore[misc]

    def drop_if_stale(self) -> None:
        """Disconnect if the locator learned that Redis moved since this connected."""
        if self.located and self.located_generation != self.locator.generation:
            self.disconnect()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self.drop_if_stale()
        super().send_packed_command(command, check_health)  # type: ignore[misc]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.exceptions.ResponseError as exc:
            code = transient_code(exc)
            if code is None:
                raise
            raise self.unavailable(str(exc), code) from None

    def unavailable(self, message: str, code: str) -> RedisUnavailable:
        """Drop this connection after a transient reply; learn where to go from it."""
        if not message.startswith(code):
            message = f"{code} {message}"
        learn(self.locator, code, message, self.host)
        self.disconnect()
        return RedisUnavailable(message, code)


class LocatedConnection(_Located, Connection):
    """A TCP connection to wherever its locator says Redis is."""


class LocatedSSLConnection(_Located, SSLConnection):
    """A TLS connection to wherever its locator says Redis is."""
