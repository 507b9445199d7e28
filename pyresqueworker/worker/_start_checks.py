"""Mistakes in how a worker was started that would otherwise go unsaid, said once at start.

A worker with no handler fails every job with ``NameError``; a worker on a mistyped queue
(``hihg``) waits for ever on a queue nothing is pushed to. Neither is refused: Resque starts on
empty queues, and a queue may get its first job after the worker starts.

:func:`warn_at_start` runs once per ``run_worker``: in the worker process it runs itself, once
its start has succeeded (a start that fails stays one line), or with ``--processes`` in the
supervisor's parent before it forks, so neither N worker processes nor their restarts repeat it.
There it also refuses a server older than the package supports, once, before any child starts
(a worker process refuses it itself: :func:`~._startup.first_connection`).
"""

from __future__ import annotations

from typing import Optional

import redis

from ..jobs.registry import Registry
from ..log import logger
from ..protocol.connection import describe
from ..protocol.queues import closest_queue
from ..protocol.server_version import ServerTooOld, require_supported
from ..protocol.urls import PASSWORD_IN_PS, password_in_argv
from ..protocol.wire import Keys
from ._startup import WorkerError
from .config import WorkerConfig

__all__ = ["handler_hint", "unknown_queues", "warn_at_start"]


def handler_hint(config: WorkerConfig, handlers: str) -> str:
    """How ``handlers`` ("its handler", "the handlers") get registered, in the terms of how
    this worker was started: a flag of its command line, or an import before ``run_worker``."""
    if config.command is not None:
        return f"is the module that registers {handlers} given to {config.command} with --app?"
    return (f"import the module that registers {handlers} before calling run_worker, and pass "
            "run_worker the Registry if it is not the default one")


def warn_at_start(config: WorkerConfig, registry: Registry, conn: redis.Redis) -> None:
    """Warn about an empty registry and about each queue named in the config that is not in
    the namespace's ``queues`` set and holds no job (with the closest known name); and about
    a Redis password on the process's command line, which ``ps`` shows. A server too old for
    the package is refused (:class:`WorkerError`)."""
    try:
        require_supported(conn, describe(conn))
    except ServerTooOld as exc:
        raise WorkerError(str(exc)) from None
    except redis.RedisError:  # gone again since its PING: each worker process checks anyway
        pass
    if password_in_argv(config.redis_url):
        logger.warning(PASSWORD_IN_PS)
    if not registry.handlers():
        logger.warning("no job handler is registered: every job will fail with NameError ("
                       + handler_hint(config, "the handlers") + ")")
    keys = Keys(config.namespace)
    try:
        unknown = unknown_queues(conn, keys, config.queues.named)
    except redis.RedisError as exc:  # a warning is not worth a failed or delayed start
        logger.debug("could not check the queues against the queues set",
                     extra={"error": str(exc)})
        return
    for name, closest in unknown:
        guess = f": did you mean {closest!r}?" if closest is not None else ""
        logger.warning(f"queue {name!r} is empty and not in {keys.queues} (a typo?){guess}")


def unknown_queues(conn: redis.Redis, keys: Keys,
                   names: tuple[str, ...]) -> list[tuple[str, Optional[str]]]:
    """Each of ``names`` that is not in the ``queues`` set and has no job, with the closest
    name in the set (or None), in one round trip."""
    if not names:  # only globs: they match what the set holds, so nothing to check
        return []
    with conn.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.queues)
        for name in names:
            pipe.llen(keys.queue(name))
        members, *sizes = pipe.execute()
    known = {m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in members}
    return [(name, closest_queue(name, known)) for name, size in zip(names, sizes)
            if name not in known and not size]
