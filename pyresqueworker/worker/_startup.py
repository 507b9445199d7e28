"""Starting a worker against a Redis that may not be there yet, or not be usable at all.

Start-up retries while Redis is away (refused, cut, ``LOADING``...) for ``--connect-timeout``
seconds; anything waiting cannot fix (credentials, ACL permissions, a database number, a port
that is not Redis) ends it at once. Either way the command line gets one line, never a
traceback (:class:`WorkerError`).
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

import redis

from ..log import logger
from ..protocol._outage import Backoff, is_redis_away, server_info
from ..protocol.connection import TLSFiles, explain_error, wants_client_certificate

__all__ = ["WorkerError", "is_cluster_node", "retry_start_up"]

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
