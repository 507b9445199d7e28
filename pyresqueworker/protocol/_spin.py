"""Waiting for a reply that is due in microseconds by polling the socket, not sleeping on it.

A client asleep in ``recv`` must be woken when its reply lands. When Redis runs on the same
host, Redis pays for that wake-up: its ``write`` runs the receiver's side of loopback TCP and
wakes the sleeping CPU (an inter-processor interrupt, dear in a virtual machine). On the
bench's 2-core VM a bare ``PING`` round trip cost Redis 31 µs of CPU with a sleeping client
and 19 µs with a polling one. A slot alone in its process polls for its claim's reply for a
short budget, then sleeps as before; a reply that keeps missing the budget (a remote Redis,
a busy box) turns the polling off for a while, so it never costs more than it saves.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from typing import Optional

__all__ = ["ReplySpin"]

_MISSES_TO_REST = 8  # budgets missed in a row before polling rests...
_REST_CALLS = 1024  # ...for this many calls, then is tried again


class ReplySpin:
    """Polls one socket at a time for readability, up to ``budget`` seconds per reply."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.hits = 0  # replies that came within the budget (for tests and tuning)
        self.misses = 0
        self._missed_in_a_row = 0
        self._resting = 0  # calls left before polling is tried again
        self._poller: Optional[select.poll] = None
        self._polled: Optional[socket.socket] = None

    def wait(self, sock: socket.socket) -> None:
        """Return once ``sock`` has something to read or the budget is spent.

        TLS sockets are not polled: decrypted bytes may already wait in the TLS layer,
        where ``poll`` cannot see them.
        """
        if self._resting:
            self._resting -= 1
            return
        if sock is not self._polled:  # (a new connection: checked once, not per reply)
            self._polled = sock
            self._poller = None if isinstance(sock, ssl.SSLSocket) else select.poll()
            if self._poller is not None:
                self._poller.register(sock, select.POLLIN)
        if self._poller is None:
            return
        poll = self._poller.poll
        deadline = time.perf_counter() + self.budget
        while not poll(0):
            if time.perf_counter() > deadline:
                self.misses += 1
                self._missed_in_a_row += 1
                if self._missed_in_a_row >= _MISSES_TO_REST:
                    self._missed_in_a_row = 0
                    self._resting = _REST_CALLS
                return
        self.hits += 1
        self._missed_in_a_row = 0
