"""``--processes N``: a single-threaded parent forks N worker processes and keeps them alive.

The parent never starts threads or opens Redis connections before forking (forking a
threaded Python process is unsafe; the one thread ``--metrics-port`` adds serves scrapes and
takes no lock a forked worker needs), forwards every signal a worker understands to its
children, and replaces a child that dies.

A child that died holding a job (a handler that segfaulted, an OOM kill) is replaced at once:
its job was recovered and counted toward ``--max-recoveries``, so a job that kills every
worker that runs it ends as a poison-pill failure after a few quick restarts instead of
stalling the queue behind growing delays. A child that died holding nothing (a crash at
start-up, a broken import, a Redis it cannot use) waits a growing delay, so a crash loop that
does no work cannot spin.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable, Optional, Union

from ..log import logger

RECYCLE_EXIT = 75  # a worker that exited to be replaced (--max-jobs / --max-memory)
#: A child that ran this long before dying was healthy: its restart delay starts over, so one
#: crash after hours of good work is not punished for the crash loop of yesterday.
HEALTHY_RUN = 10.0

__all__ = ["Supervisor"]

_FORWARDED = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2,
              signal.SIGCONT)


class Supervisor:
    """Forks ``count`` children running ``child_main`` (which returns an exit code)."""

    def __init__(
        self,
        count: int,
        child_main: Callable[[], int],
        title: str = "",
        on_child_died: Optional[Callable[[int], Union[bool, None]]] = None,
        on_child_exit: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.count = count
        self.child_main = child_main
        self.title = title
        # Called with the pid of a child that exited uncleanly (killed, crashed): that child
        # could not unregister, and may have died holding a job in its worker key. It returns
        # True if the child held a job (it was working: replace it at once), else False or
        # None (not known: the restart waits its delay).
        self.on_child_died = on_child_died
        self.on_child_exit = on_child_exit  # called with the pid of every child that exits
        self.children: dict[int, int] = {}  # pid -> slot index
        self.stopping = False
        self.restart_delay = [0.0] * count
        self.restart_at = [0.0] * count
        self.started_at = [0.0] * count
        self.pending: set[int] = set()  # indexes waiting for their restart delay

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in _FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = self.child_main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # report and leave; never run on in the parent's code
                logger.error("worker process crashed", extra={"error": repr(exc)})
            finally:
                os._exit(code)
        self.children[pid] = index
        self.started_at[index] = time.monotonic()
        logger.info("worker process started", extra={"pid": pid, "index": index})

    def _forward(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Supervise until every child has exited after a stop signal (or on its own, 0)."""
        from ._housekeeping import set_proctitle

        set_proctitle(f"pyresque-supervisor: {self.count} workers {self.title}".rstrip())
        for sig in _FORWARDED:
            signal.signal(sig, self._forward)
        for index in range(self.count):
            self._spawn(index)
        finished_cleanly: set[int] = set()
        while self.children or self.pending:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == 0:
                self._restart_due(finished_cleanly)
                time.sleep(0.05)
                continue
            index = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.on_child_exit is not None:
                try:
                    self.on_child_exit(pid)
                except Exception as exc:  # bookkeeping must not take the supervisor down
                    logger.error("child exit hook failed", extra={"pid": pid, "error": repr(exc)})
            if code == RECYCLE_EXIT and not self.stopping:
                logger.info("worker process recycled", extra={"pid": pid})
                self._spawn(index)  # it unregistered cleanly: replace it at once
                continue
            held_job = False
            if code not in (0, RECYCLE_EXIT) and self.on_child_died is not None:
                try:
                    held_job = self.on_child_died(pid) is True
                except Exception as exc:  # the supervisor must outlive a failed clean-up
                    logger.error("clean-up after dead worker process failed",
                                 extra={"pid": pid, "error": repr(exc)})
            if self.stopping or code == 0:
                finished_cleanly.add(index)
                logger.info("worker process exited", extra={"pid": pid, "code": code})
                continue
            delay = self.next_restart_delay(index, time.monotonic(), held_job)
            self.restart_at[index] = time.monotonic() + delay
            logger.warning("worker process died; restarting", extra={
                "pid": pid, "code": code, "held_job": held_job, "restart_in_s": delay})
            self._restart_due(finished_cleanly, pending=index)
        return 0

    def next_restart_delay(self, index: int, now: float, held_job: bool = False) -> float:
        """Seconds before child ``index`` is started again: none if it died holding a job,
        else doubling from 0.5 s to 30 s while it keeps dying young, back to 0.5 s after it
        ran :data:`HEALTHY_RUN` seconds or died working."""
        if held_job or now - self.started_at[index] >= HEALTHY_RUN:
            # It was working: the delays of an earlier crash loop say nothing about it. (Each
            # such death counts its job toward --max-recoveries, which bounds the restarts.)
            self.restart_delay[index] = 0.0
        if held_job:
            return 0.0
        delay = min(max(0.5, self.restart_delay[index] * 2), 30.0)
        self.restart_delay[index] = delay
        return delay

    def _restart_due(self, finished: set[int], pending: Optional[int] = None) -> None:
        """Restart children whose delay has passed (a pending index waits its turn)."""
        if pending is not None:
            self.pending.add(pending)
        for index in sorted(self.pending):
            if self.stopping or index in finished:
                self.pending.discard(index)
            elif time.monotonic() >= self.restart_at[index]:
                self.pending.discard(index)
                self._spawn(index)
