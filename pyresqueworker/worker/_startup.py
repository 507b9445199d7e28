"""Starting a worker against a Redis that may not be there yet, or not be usable at all.

Start-up retries while Redis is away (refused, cut, ``LOADING``...) for ``--connect-timeout``
seconds; anything waiting cannot fix (credentials, ACL permissions, a database number, a port
that is not Redis, a server older than the package supports) ends it at once. Either way the
command line gets one line, never a traceback (:class:`WorkerError`).
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Callable, Optional, Protocol, TypeVar

import redis

from ..log import logger
from ..protocol import wire
from ..protocol._outage import STOP_PATIENCE, Backoff, is_redis_away, server_info
from ..protocol.connection import TLSFiles, describe, explain_error, wants_client_certificate
from ..protocol.server_version import ServerTooOld, require_supported

__all__ = ["WorkerError", "first_connection", "is_cluster_node", "retry_start_up",
           "start_up_unless_stopped"]

T = TypeVar("T")


class WorkerError(RuntimeError):
    """The worker cannot start or stop cleanly (Redis unreachable...); the message is one safe
    line for the command line: no traceback, no credentials."""


def is_cluster_node(conn: redis.Redis) -> bool:
    """Whether ``conn`` talks to a Redis Cluster node (False where INFO is unknown)."""
    return bool(server_info(conn, "cluster").get("cluster_enabled"))


def retry_start_up(step: Callable[[], T], what: str, where: str, timeout: float,
                   stopped: Callable[[], bool] = lambda: False,
                   tls: Optional[TLSFiles] = None) -> T:
    """Run a start-up step, retrying while Redis is away for up to ``timeout`` seconds.

    Then, or at once for an error that waiting cannot fix (credentials, permissions, a bad
    database index, a TLS server that wants the client certificate ``tls`` lacks),
    :class:`WorkerError` with one line naming ``where`` (no password).
    """
    deadline = time.monotonic() + timeout
    backoff = Backoff(base=0.1, cap=1.0)
    while True:
        try:
            return step()
        except ServerTooOld as exc:  # its message is the whole line
            raise WorkerError(str(exc)) from None
        except Exception as exc:
            # A fresh TLS connection without a client certificate, closed at its first
            # command, is the server wanting one (its alert may come second): no wait helps.
            if (not is_redis_away(exc) or isinstance(exc, redis.exceptions.AuthenticationError)
                    or wants_client_certificate(exc, where, tls)):
                raise WorkerError(explain_error(exc, where, tls) + f" (while trying to {what})"
                                  ) from None
            if stopped():
                raise WorkerError(f"stopped while waiting for Redis at {where}: {exc}") from None
            if time.monotonic() >= deadline:
                waited = f" (gave up after --connect-timeout {timeout:g}s)" if timeout else ""
                raise WorkerError(f"cannot reach Redis at {where}{waited}: {exc}") from None
            if backoff.failures == 0:
                logger.warning("redis unavailable at start-up, retrying", extra={
                    "redis": where, "error": str(exc)[:500], "connect_timeout_s": timeout})
            time.sleep(min(backoff.next_delay(), max(0.0, deadline - time.monotonic())))


def start_up_unless_stopped(start: Callable[[], None], stop_asked: Callable[[], bool],
                            where: str) -> None:
    """Run ``start`` (the start-up steps) in a thread of its own, so that a stop asked for
    meanwhile (``stop_asked``, polled) is not held up by a call to a Redis gone silent, which
    waits out its socket timeouts, each retried: once a stop is asked, the steps get
    STOP_PATIENCE seconds more, then :class:`WorkerError` (what the start wrote, its
    registration, is pruned once this process is gone)."""
    failure: list[BaseException] = []
    context = contextvars.copy_context()  # (e.g. the worker's calls kept out of traces)

    def run() -> None:
        try:
            context.run(start)
        except BaseException as exc:  # raised here, in the main thread, below
            failure.append(exc)

    thread = threading.Thread(target=run, name="start-up", daemon=True)
    thread.start()
    while thread.is_alive() and not stop_asked():
        thread.join(0.05)
    thread.join(STOP_PATIENCE)
    if thread.is_alive():
        raise WorkerError(f"stopped while waiting for Redis at {where}: no answer in "
                          f"{STOP_PATIENCE:g} s")
    if failure:
        raise failure[0]


class Starting(Protocol):
    """A start-up step runner: ``step`` retried while Redis is away, ``what`` for messages."""

    def __call__(self, step: Callable[[], T], what: str) -> T: ...


def first_connection(conn: redis.Redis, starting: Starting, namespace: str) -> redis.Redis:
    """``conn`` once Redis answers (``starting`` retries each step while it is away); refused
    at once for a server too old, or a Redis Cluster without a hash tag in the namespace (a
    job's keys must live in one slot)."""
    starting(conn.ping, "connect")
    # Before anything is written: a server older than the package supports would otherwise
    # fail mid-run, at its first LMOVE (ServerTooOld is one line, as WorkerError).
    starting(lambda: require_supported(conn, describe(conn)), "check the server version")
    if starting(lambda: is_cluster_node(conn), "check the server") and (
            not wire.has_hash_tag(namespace)):
        raise WorkerError(
            f"Redis at {describe(conn)} is a Redis Cluster: the namespace {namespace!r} "
            "needs a hash tag (e.g. '{resque}:') so every key of a job lives in one slot")
    return conn
