"""Running one job in a forked child (``--fork-per-job``, Resque's isolation mode).

The child runs the job and writes its outcome to a pipe; the parent waits with the job's
timeout and kills the child when it is overrun. A child that dies by a signal (a segfault,
the OOM killer, ``USR1``) becomes a ``Resque::DirtyExit`` failure, as Ruby's parent writes,
and the worker itself lives on. Timeouts here are hard: the child is killed, whatever it was
doing. In thread mode they are soft (see :mod:`pyresqueworker.worker._slot`).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from typing import Callable, Optional

from ..protocol.failure import DIRTY_EXIT
from ._claim_values import Finish, JobResult

__all__ = ["JobResult", "JobTimeout", "run_forked"]

_CHILD_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGUSR1,
                          signal.SIGUSR2, signal.SIGCONT)


class JobTimeout(Exception):
    """A job ran past its timeout (``--job-timeout`` or the handler's ``timeout=``)."""

    resque_name = "pyresqueworker.JobTimeout"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_forked(
    perform: Callable[[], JobResult],
    timeout: Optional[float],
    failure: Callable[[str, str], str],
    track_child: Callable[[Optional[int]], None],
) -> JobResult:
    """Run ``perform`` in a child process and return its result.

    ``failure(exception_name, message)`` builds a failure entry for deaths the child cannot
    report itself; ``track_child`` is told the child's pid (and ``None`` when it is gone) so
    that USR1 and shutdown can kill it.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the job, report, leave without running any parent code
        code = 0
        try:
            os.close(read_end)
            for sig in _CHILD_DEFAULT_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            result = perform()
            data = json.dumps([result.finish.mode, result.finish.entry, result.finish.cleanup,
                               result.outcome, result.error, result.retryable,
                               result.value]).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_end)
    track_child(pid)
    try:
        data, timed_out = _read_until(read_end, timeout, pid)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        track_child(None)
    if timed_out:
        message = f"job exceeded its timeout of {timeout:g}s; child pid {pid} was killed"
        return JobResult(Finish("2", failure(JobTimeout.resque_name, message)), "timeout", message)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        message = (f"Child process received unhandled signal pid {pid} "
                   f"{_signal_name(number)} (signal {number})")
        return JobResult(Finish("2", failure(DIRTY_EXIT, message)), "failure", message)
    try:
        mode, entry, cleanup, outcome, error, retryable, value = json.loads(data)
        return JobResult(Finish(str(mode), str(entry), str(cleanup)), str(outcome), error,
                         bool(retryable), value)
    except (ValueError, TypeError, IndexError):
        message = (f"Child process pid {pid} exited with status "
                   f"{os.waitstatus_to_exitcode(status)} without reporting a result")
        return JobResult(Finish("2", failure(DIRTY_EXIT, message)), "failure", message)


def _read_until(fd: int, timeout: Optional[float], pid: int) -> tuple[bytes, bool]:
    """Everything the child writes, or (partial, True) after killing it at the timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return b"".join(chunks), True
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
