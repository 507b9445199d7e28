"""Which Redis failures are "Redis is away for now", and the one exception they all become.

A production Redis answers some commands with an error that says nothing about the command:
out of memory, no replica to acknowledge the write, a replica or demoted master, a restart
still loading, a cluster slot that moved. Each passes on its own (memory is freed, a replica
reattaches, Sentinel promotes a new master, the cluster settles), so every loop treats it like
a refused connection: back off and retry. :class:`RedisUnavailable` is a
``redis.exceptions.ConnectionError``, so redis-py's own retry and every ``except REDIS_ERRORS``
handle it, and the connection that saw it is dropped so the next command re-resolves where
Redis is (see :mod:`pyresqueworker.protocol._locate`).
"""

from __future__ import annotations

from typing import Optional

import redis

__all__ = [
    "REDIS_ERRORS", "TRANSIENT_CODES", "RedisUnavailable", "raise_if_away", "transient_code",
]

#: Error-reply prefixes that describe the server's state, not the command.
TRANSIENT_CODES = frozenset({
    "OOM", "NOREPLICAS", "READONLY", "LOADING", "MASTERDOWN", "BUSY", "CLUSTERDOWN",
    "TRYAGAIN", "MOVED", "ASK", "UNBLOCKED",
})


class RedisUnavailable(redis.exceptions.ConnectionError):
    """Redis answered with a transient error reply (``OOM``, ``READONLY``, ``MOVED``...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


# redis-py strips the code from the replies it maps to its own classes.
_CLASS_CODES: tuple[tuple[type[Exception], str], ...] = (
    (redis.exceptions.MovedError, "MOVED"),  # before AskError, its base class
    (redis.exceptions.AskError, "ASK"),
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
)


# Redis before 7.0 does not pass on the error a command inside a script got: it wraps it, as
# "ERR Error running script (call to f_<sha>): @user_script:47: @user_script: 47: -OOM ...".
_IN_SCRIPT = ("Error running script", "ERR Error running script")


def transient_code(error: BaseException | str) -> Optional[str]:
    """The transient code of an error reply (an exception or the reply's text), or None; also
    of the reply a script's command got, in the wrapped form Redis 6.2 returns it."""
    if isinstance(error, str):
        if error.startswith(_IN_SCRIPT) and ": -" in error:
            error = error[error.index(": -") + 3:]
        code = error.split(" ", 1)[0]
        return code if code in TRANSIENT_CODES else None
    if isinstance(error, RedisUnavailable):
        return error.code
    for cls, code in _CLASS_CODES:
        if isinstance(error, cls):
            return code
    if not isinstance(error, redis.exceptions.ResponseError):
        return None
    status = getattr(error, "status_code", None)
    if isinstance(status, str) and status in TRANSIENT_CODES:
        return status
    return transient_code(str(error))


def raise_if_away(watch_error: redis.exceptions.WatchError) -> None:
    """Re-raise the connection error behind a ``WatchError``.

    redis-py turns a connection error during a WATCH transaction into ``WatchError``, the
    error that means "someone changed the key, try again"; a loop that retries on it would
    spin for as long as Redis is away. Call this first in such a loop's ``except``.
    """
    cause = watch_error.__context__
    if isinstance(cause, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        raise cause


# Errors that mean "Redis is away for now": every loop backs off and retries on these.
REDIS_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
)
