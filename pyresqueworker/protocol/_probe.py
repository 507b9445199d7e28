"""Noticing within a fraction of a second that a Redis which stopped answering answers again.

A loop whose connection failed used to retry its own command after its backoff. In a black
hole (packets dropped, nothing refused) that retry hangs for its connect or read timeout
(5 s and more, so that a slow link or a blocking command is never cut), and one that is
in flight when the network heals keeps the loop waiting for the rest of that timeout: a
connection made during the outage may never answer (its handshake was lost, or a firewall
forgot it), and a connect whose SYN was dropped waits for the kernel's retransmission.

So the loops of one process wait for one :class:`Prober` instead: it opens a fresh
connection and sends ``PING`` every :data:`PROBE_EVERY` seconds, without waiting for the
probes before it (each may hang until its own timeout in a black hole). The first probe sent
after the heal answers within a round trip, and the loops retry at once on fresh connections.
A probe's timeouts stay long, so a slow link is never taken for a dead one: it only answers
later.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..log import logger

__all__ = ["MAX_PROBES", "PROBE_EVERY", "PROBE_TIMEOUT", "Prober", "is_link_down", "probe_clients"]

PROBE_EVERY = 0.25  # seconds between probes while some loop waits for Redis
PROBE_TIMEOUT = 5.0  # a probe's connect and reply timeouts (never shorter than a slow link)
MAX_PROBES = 24  # probes in flight at once (in a black hole each waits PROBE_TIMEOUT)
_INTEREST = 1.0  # seconds the prober keeps probing after a waiter last asked


def is_link_down(exc: BaseException) -> bool:
    """A refused, cut or timed-out connection: no reply at all. (An error reply such as
    ``OOM`` or ``LOADING`` came over a working link: waiting for a probe would not help.)"""
    from .redis_errors import transient_code

    return (isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                             OSError))
            and transient_code(exc) is None
            and not isinstance(exc, redis.exceptions.AuthenticationError))


class _Factory(Protocol):
    def connect(self, **options: Any) -> redis.Redis: ...


def probe_clients(factory: _Factory) -> Callable[[], redis.Redis]:
    """What makes a probe's client: one socket from the process's connection factory (so it
    finds Redis as the loops do: Sentinel, TLS, credentials), long timeouts, no retries."""
    return lambda: factory.connect(single_connection_client=True, socket_timeout=PROBE_TIMEOUT,
                                   socket_connect_timeout=PROBE_TIMEOUT,
                                   retry=Retry(NoBackoff(), 0))


class Prober:
    """Probes Redis for the loops of one process while any of them waits (see the module)."""

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self._connect = connect  # a fresh client with PROBE_TIMEOUT timeouts and no retries
        self._cond = threading.Condition()
        self._answered = float("-inf")  # when the newest answered probe was sent (monotonic)
        self._wanted_until = float("-inf")  # probing goes on until then
        self._in_flight = 0
        self._running = False

    def answered_since(self, since: float) -> bool:
        """Whether a probe sent after ``since`` (monotonic) got an answer."""
        return self._answered > since

    def want(self) -> None:
        """Keep probing for a while (a waiter calls this at least every :data:`_INTEREST` s)."""
        with self._cond:
            self._wanted_until = time.monotonic() + _INTEREST
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="redis-probe", daemon=True).start()

    def wait(self, since: float, stopped: Callable[[], bool], patience: float) -> bool:
        """Block until a probe sent after ``since`` answers (True), or ``stopped()`` or
        ``patience`` seconds pass (False: the caller retries anyway)."""
        deadline = time.monotonic() + patience
        while not self.answered_since(since):
            if stopped() or time.monotonic() >= deadline:
                return False
            self.want()
            with self._cond:
                self._cond.wait(0.1)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                if time.monotonic() > self._wanted_until:
                    self._running = False
                    return
                start = self._in_flight < MAX_PROBES
                if start:
                    self._in_flight += 1
            if start:
                threading.Thread(target=self._probe, name="redis-probe-ping",
                                 daemon=True).start()
            time.sleep(PROBE_EVERY)

    def _probe(self) -> None:
        sent = time.monotonic()
        answered = False
        conn: Optional[redis.Redis] = None
        try:
            conn = self._connect()
            conn.ping()
            answered = True
        except Exception as exc:
            # An error reply (LOADING, READONLY...) came from a Redis that is there: the
            # loop's retry decides what it means. Refused, reset, timed out: still away.
            answered = isinstance(exc, redis.exceptions.ResponseError) or not is_link_down(exc)
            if not answered:
                logger.debug("redis probe failed", extra={"error": repr(exc)[:200]})
        finally:
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # (closing a dead connection must not count as anything)
                    pass
            with self._cond:
                self._in_flight -= 1
                if answered and sent > self._answered:
                    self._answered = sent
                    self._cond.notify_all()
