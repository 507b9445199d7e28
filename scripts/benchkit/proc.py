"""Worker subprocesses and what the bench reads about them from /proc (``scripts/bench.py``)."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Optional

from benchkit import jobs as bj
from benchkit.common import BenchError, System

__all__ = ["PeakRss", "Worker", "package_env", "threads_of", "tree"]

SCRIPTS = Path(__file__).resolve().parent.parent  # where the benchkit package is
ROOT = SCRIPTS.parent


def package_env(root: str) -> dict[str, str]:
    """The environment of a process that imports ``pyresqueworker`` from ``root`` (run it with
    ``cwd=root``: ``python -c`` puts the working directory first on its path), and ``benchkit``
    from this checkout. ``PYTHONPATH`` comes before site-packages, so before an editable
    install's path or finder. Our jobs file checks that it did (``BENCH_PACKAGE_ROOT``)."""
    path = os.pathsep.join(p for p in (root, str(SCRIPTS), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "BENCH_PACKAGE_ROOT": root}


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (with ``--processes``, the forked workers)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as fh:
                todo += [int(p) for p in fh.read().split()]
        except OSError:
            try:
                psutil: Any = importlib.import_module("psutil")
                todo += [c.pid for c in psutil.Process(current).children()]
            except Exception:  # no psutil, or the process is gone
                pass
    return pids


def _status_field(pid: int, name: str) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(ln.split()[1]) for ln in fh if ln.startswith(name)), None)
    except OSError:
        return None


def threads_of(pid: int) -> int:
    """Threads of ``pid`` and its descendants together (``Threads:`` in /proc/<pid>/status)."""
    return sum(_status_field(p, "Threads:") or 0 for p in tree(pid))


def _peak_kb(pid: int, previous: int) -> int:
    """The kernel's peak RSS (VmHWM) of ``pid``; elsewhere psutil's RSS, maximised."""
    peak = _status_field(pid, "VmHWM:")
    if peak is not None:
        return peak
    try:
        psutil: Any = importlib.import_module("psutil")
        return max(previous, int(psutil.Process(pid).memory_info().rss) // 1024)
    except Exception:
        return previous


class PeakRss(threading.Thread):
    """Follows a worker process tree until stopped; reports its largest process's peak RSS.

    VmHWM only grows, so the last reading (taken at most 20 ms before exit) is the peak.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.peaks: dict[int, int] = {}
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.02):
            for pid in tree(self.pid):
                self.peaks[pid] = _peak_kb(pid, self.peaks.get(pid, 0))

    def stop(self) -> Optional[float]:
        self.done.set()
        self.join()
        return max(self.peaks.values()) / 1024 if self.peaks else None


class Worker:
    """One worker subprocess of a system (pinned by ``prefix``), its log in a temporary file."""

    def __init__(self, url: str, system: System, burst: bool,
                 prefix: Optional[list[str]] = None) -> None:
        code = system.checkout  # ours at another version (--baseline), or None: this checkout
        root = code.root if code is not None else str(ROOT)
        argv = bj.worker_argv(system.framework, url, concurrency=system.concurrency,
                              processes=system.processes, burst=burst, poll=system.poll,
                              extra=system.extra, queues=system.queues,
                              log_level=system.log_level,
                              entry=code.entry if code is not None else bj.OURS_ENTRY)
        env = {**os.environ, "BENCH_FRAMEWORK": system.framework, "BENCH_REDIS_URL": url,
               **package_env(root), **bj.worker_env(system.framework, url)}
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*(prefix or []), *argv], env=env, cwd=root,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        self.rss = PeakRss(self.proc.pid)
        self._stopped: Optional[tuple[Optional[float], str] | BenchError] = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> tuple[Optional[float], str]:
        """SIGTERM if still running; returns (peak RSS MB, the end of its log).

        Raises :class:`BenchError` if it had exited by itself with an error (again if called
        again).
        """
        if self._stopped is not None:
            if isinstance(self._stopped, BenchError):
                raise self._stopped
            return self._stopped
        exited = self.proc.poll()
        if exited is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        peak = self.rss.stop()
        self.log.seek(0)
        tail = self.log.read().decode("utf-8", "replace")[-600:]
        self.log.close()
        if exited:  # a worker stopped by SIGTERM may exit non-zero (arq does): not an error
            self._stopped = BenchError(f"worker exited with {exited}: {_last_lines(tail)}")
            raise self._stopped
        self._stopped = (peak, tail)
        return peak, tail


def _last_lines(text: str, count: int = 3) -> str:
    """The last lines of a log, on one line (a usage error's message is its last line)."""
    return " | ".join(ln.strip() for ln in text.strip().splitlines()[-count:])
