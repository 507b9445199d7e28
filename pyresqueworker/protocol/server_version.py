"""The oldest server the package runs on, checked once when a command starts.

The worker claims with ``LMOVE`` and waits with ``BLMOVE``, and its heartbeat asks
``SMISMEMBER``: commands Redis 6.2 added. On an older server each would fail mid-run, in every
loop that sends it, so ``pyresque-work``, ``pyresque-scheduler`` and ``pyresque`` read
``INFO server`` first and refuse such a server with one line. Tested servers: Redis 6.2 and
7.0, Valkey 8.1 (docs/servers.md).

Valkey reports ``redis_version:7.2.4`` (the Redis it is compatible with) beside its own
``valkey_version``; the check reads ``redis_version``. A server that does not answer
``INFO`` (the demo's fakeredis) or reports no version is not refused: it cannot be judged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

import redis

from ._outage import server_info

__all__ = ["MINIMUM", "NEEDS", "ServerTooOld", "require_supported", "too_old"]

#: The oldest ``redis_version`` the package supports.
MINIMUM = (6, 2)
#: Commands the package sends that Redis :data:`MINIMUM` added (the refusal names the first).
NEEDS = ("LMOVE", "BLMOVE", "SMISMEMBER")


class ServerTooOld(RuntimeError):
    """The server is older than :data:`MINIMUM`; the message is one line for a command line."""


def _version(text: str) -> Optional[tuple[int, ...]]:
    parts = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(p) for p in parts.groups() if p is not None) if parts else None


def too_old(info: Mapping[str, Any], where: str) -> Optional[str]:
    """The refusal for a server whose ``INFO server`` is ``info``, or None when it is new
    enough or says no version."""
    reported = str(info.get("redis_version", ""))
    version = _version(reported)
    if version is None or version[:2] >= MINIMUM:
        return None
    name = str(info.get("server_name") or "redis")
    own = info.get(f"{name}_version")  # a Redis-compatible server's own version, if it has one
    server = (f"Redis {reported}" if name.lower() == "redis"
              else f"{name} {own} (Redis {reported})" if own else f"{name} (Redis {reported})")
    minimum = ".".join(map(str, MINIMUM))
    return (f"{server} at {where} is too old: pyresqueworker needs Redis {minimum} or newer "
            f"(it uses {NEEDS[0]})")


def require_supported(conn: redis.Redis, where: str) -> None:
    """Raise :class:`ServerTooOld` if the server behind ``conn`` is older than :data:`MINIMUM`.

    One ``INFO server`` round trip; Redis being away still raises its own error, and a server
    that refuses ``INFO`` (unknown command, an ACL without ``+info``) passes."""
    refusal = too_old(server_info(conn, "server"), where)
    if refusal is not None:
        raise ServerTooOld(refusal)
