"""Waiting for work without spinning: one blocking watcher per process, the rest asleep.

Only one idle slot of a process blocks in Redis (see :mod:`pyresqueworker.fetch`); the other
idle slots sleep on a condition and are woken one at a time when the watcher's bell rings, so
a process with many idle slots costs Redis about as little as a process with one, and a burst
of jobs still fans out: each slot that gets a job after a ring passes the wake-up on.
"""

from __future__ import annotations

import threading
import time

from .fetch import Claimer

__all__ = ["Doorbell"]


class Doorbell:
    """Shared by the slots of one process."""

    def __init__(self, sleeper_poll: float) -> None:
        self._watching = threading.Lock()
        self._ring = threading.Condition()
        self.sleeper_poll = sleeper_poll  # how often a non-watching idle slot re-checks anyway

    def wait(self, claimer: Claimer, queue: str, timeout: float) -> bool:
        """Block until a job may be waiting; True if woken by one (not by the timeout)."""
        if not self._watching.acquire(blocking=False):
            with self._ring:
                return self._ring.wait(self.sleeper_poll)
        try:
            started = time.monotonic()
            rang = claimer.wait(queue, timeout)
            if not rang:
                # A server that does not really block (fakeredis) must not make us spin.
                rest = timeout - (time.monotonic() - started)
                if rest > timeout / 2:
                    time.sleep(rest)
        finally:
            self._watching.release()
        return rang

    def pass_on(self) -> None:
        """Wake one sleeping idle slot, if any."""
        with self._ring:
            self._ring.notify(1)
