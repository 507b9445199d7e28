"""Hearing of a Sentinel failover the moment it starts, so no write goes to a master being demoted.

Without this, a worker learns of a failover only when its master refuses a write
(``READONLY``, once Sentinel has reconfigured it as a replica, seconds later): every job it
claims on the old master in between is lost with that master's data and runs again from the
new one. Sentinel publishes each step on its own pub/sub channels; the leader publishes
``+failover-state-send-slaveof-noone`` just before it promotes a replica, and
``+promoted-slave`` once the replica is master. One thread per Sentinel listens; the first
event holds every claim of the process (:meth:`Locator.hold`), the second points every
connection at the promoted replica and lets claims go on. An aborted failover, or silence for
:data:`HOLD_SECONDS`, releases the hold.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

import redis

from ..log import logger
from ._locate import Address, SentinelLocator
from ._outage import Outage

__all__ = ["HOLD_SECONDS", "FailoverWatch"]

HOLD_SECONDS = 10.0
_STARTING = "+failover-state-send-slaveof-noone"
_PROMOTED = "+promoted-slave"
_SWITCHED = "+switch-master"
_ABORTS = ("-failover-abort-not-elected", "-failover-abort-slave-timeout",
           "-failover-abort-no-good-slave")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class FailoverWatch:
    """Subscribes to every Sentinel of ``locator`` until :meth:`stop`."""

    def __init__(self, locator: SentinelLocator, sentinels: list[Address],
                 options: Optional[dict[str, Any]] = None) -> None:
        self.locator = locator
        self.sentinels = sentinels
        self.options = dict(options or {})
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for host, port in self.sentinels:
            thread = threading.Thread(target=self._listen, args=(host, port), daemon=True,
                                      name=f"sentinel-watch-{port}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _listen(self, host: str, port: int) -> None:
        outage = Outage(f"sentinel {host}:{port} watch", level=logging.INFO)
        options = {**self.options, "socket_connect_timeout": 2.0, "socket_timeout": 5.0}
        while not self._stop.is_set():
            conn: Optional[redis.Redis] = None
            pubsub: Any = None
            try:
                conn = redis.Redis(host=host, port=port, **options)
                pubsub = conn.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
                pubsub.subscribe(_STARTING, _PROMOTED, _SWITCHED, *_ABORTS)
                outage.succeeded()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self.on_event(_text(message["channel"]), _text(message["data"]))
            except Exception as exc:  # a dead Sentinel must not end the watch of the others
                self._stop.wait(outage.failed(exc))
            finally:
                if pubsub is not None:
                    pubsub.close()
                if conn is not None:
                    conn.close()

    def on_event(self, channel: str, data: str) -> None:
        """React to one Sentinel event about our service (others are ignored)."""
        words = data.split()
        service = self.locator.service
        if channel == _SWITCHED:
            if words[:1] == [service]:
                self.locator.promoted(None)  # every Sentinel agrees now: ask them again
            return
        # "<kind> <name> <ip> <port> @ <master-name> <master-ip> <master-port>"
        if len(words) < 6 or words[4] != "@" or words[5] != service:
            return
        if channel == _STARTING:
            if not self.locator.holding():
                logger.warning("sentinel failover starting: claims paused", extra={
                    "service": service, "promoting": f"{words[2]}:{words[3]}"})
            self.locator.hold(HOLD_SECONDS)
        elif channel == _PROMOTED and words[3].isdigit():
            logger.warning("sentinel promoted a new master: reconnecting", extra={
                "service": service, "master": f"{words[2]}:{words[3]}"})
            self.locator.promoted((words[2], int(words[3])))
        elif channel in _ABORTS:
            logger.warning("sentinel failover aborted", extra={"service": service,
                                                                "reason": channel})
            self.locator.release()
