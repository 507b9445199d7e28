"""How a worker process reacts to Resque's signals (spec §7.4).

TERM/QUIT: finish running jobs (up to ``--shutdown-timeout``), then stop; a second one, or INT:
stop at once. USR1: kill the job's child (``--fork-per-job``). USR2/CONT: pause/resume claiming.

Signal handlers run in the main thread between two bytecodes, possibly while that thread
holds a lock (inside ``Event.set``, or a first handler's): taking any lock there can deadlock,
as a second TERM arriving during the first one's ``Event.set`` did. So the handlers only record
the signal (a list append and plain attributes, which take no lock), and the process's main
loop acts on it within 50 ms (:meth:`SignalHandling.handle_signals`).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

from ..log import logger

if TYPE_CHECKING:
    from ._slot_view import SlotView
    from .config import WorkerConfig

__all__ = ["SignalHandling", "kill_pid"]


def kill_pid(pid: int) -> None:
    """SIGKILL ``pid`` if it still exists."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class SignalHandling:
    """The signal part of :class:`~pyresqueworker.worker._process.WorkerProcess`."""

    config: WorkerConfig
    slots: list[SlotView]
    stopping: threading.Event
    paused: threading.Event
    wake: threading.Event
    stop_now: bool
    signal_count: int
    _signals: list[tuple[int, bool]]

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop_now)
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT):
            signal.signal(sig, self._on_other_signal)

    def _on_stop(self, signum: int, _frame: object) -> None:
        self.signal_count += 1
        if self.signal_count > 1:
            self.stop_now = True
        self._signals.append((signum, self.stop_now))

    def _on_stop_now(self, signum: int, _frame: object) -> None:
        self.signal_count += 1
        self.stop_now = True
        self._signals.append((signum, True))

    def _on_other_signal(self, signum: int, _frame: object) -> None:
        self._signals.append((signum, False))

    def handle_signals(self) -> None:
        """Act on the signals received since the last call (main thread only)."""
        while self._signals:
            signum, immediate = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
                logger.info("shutdown requested", extra={
                    "signal": signal.Signals(signum).name, "immediate": immediate})
                self.stopping.set()
                self.wake.set()
            elif signum == signal.SIGUSR1:
                self._kill_job_children()
            elif signum == signal.SIGUSR2:
                logger.info("USR2 received; pausing job processing")
                self.paused.set()
            elif signum == signal.SIGCONT:
                if self.paused.is_set():
                    logger.info("CONT received; resuming job processing")
                self.paused.clear()
                self.wake.set()
                self.wake.clear()

    def _kill_job_children(self) -> None:
        if not self.config.fork_per_job:
            logger.warning("USR1 ignored: jobs run in threads, there is no child to kill")
            return
        for slot in self.slots:
            if slot.child is not None:
                logger.info("USR1: killing job child", extra={"pid": slot.child})
                kill_pid(slot.child)
