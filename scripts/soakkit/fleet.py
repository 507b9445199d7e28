"""The soak's worker processes: several configurations side by side, started, killed, stopped.

Every worker is a real ``pyresque-work`` subprocess running :mod:`soakkit.jobs`. A
configuration's *worker processes* are the ones that run slots: the ``pyresque-work`` process
itself, or with ``--processes`` the supervisor's children (the supervisor replaces a child
that dies; the soak replaces a killed single process itself, as a service manager would).
:meth:`Fleet.refresh` keeps a registry of every worker process ever seen, with its
configuration and when it was first seen, which the verdict needs after the processes are gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from worker_helpers import children, command

__all__ = ["CONFIGS", "Config", "Fleet", "Seen", "queues_of"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def queues_of(group: str) -> tuple[str, str]:
    """A group's two queues: everything but the 1 MB jobs, and those (weighted 3:1)."""
    return f"soak_{group}", f"soak_{group}_big"


@dataclass(frozen=True)
class Config:
    """One worker configuration; ``killable`` ones get ``kill -9`` from the fault schedule."""

    name: str
    group: str
    flags: tuple[str, ...]
    slots: int  # per worker process
    processes: int = 1
    killable: bool = True

    def argv(self, url: str) -> list[str]:
        main, big = queues_of(self.group)
        return [*command(), "--app", "soakkit.jobs", "--redis", url,
                "--queues", f"{main}=3,{big}=1", "--concurrency", str(self.slots),
                "--processes", str(self.processes), "--interval", "0.5",
                "--heartbeat-interval", "1", "--prune-after", "10",
                "--shutdown-timeout", "5", "--log-level", "warning", *self.flags]


# The steady thread workers are never killed: they run the scheduler (whose master lock lives
# 180 s after its holder dies, as resque-scheduler's does) and carry the RSS check over the
# whole run; the others are killed at random.
CONFIGS = (
    Config("a-threads", "a", ("--scheduler", "--history", "1h", "--history-max", "20000"),
           slots=4, killable=False),
    Config("a-asyncio", "a", ("--execution", "asyncio"), slots=6),
    Config("a-fork", "a", ("--fork-per-job",), slots=2),
    Config("a-procs", "a", (), slots=2, processes=2),
    Config("b-threads", "b", ("--scheduler", "--history", "1h", "--history-max", "20000"),
           slots=4, killable=False),
    Config("b-asyncio", "b", ("--execution", "asyncio"), slots=6),
)


@dataclass
class Seen:
    """A worker process the soak has seen (``supervisor``: it runs no slots itself)."""

    pid: int
    config: Config
    first_seen: float
    role: str = "worker"
    killed_at: Optional[float] = None


class _Top:
    """One ``pyresque-work`` command the soak started, with its log file."""

    def __init__(self, config: Config, url: str, env: dict[str, str], log_dir: Path,
                 number: int) -> None:
        self.config = config
        self.log_path = log_dir / f"{config.name}-{number}.log"
        self.log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in reap()
        self.proc = subprocess.Popen(config.argv(url), env=env, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def reap(self) -> None:
        self.proc.wait()
        self.log.close()


class Fleet:
    """The worker processes of one soak; :meth:`close` stops every one of them."""

    def __init__(self, urls: dict[str, str], ledger_url: str, log_dir: Path,
                 configs: tuple[Config, ...] = CONFIGS) -> None:
        self.urls, self.log_dir, self.configs = urls, log_dir, configs
        self.env = _worker_env(ledger_url)
        self.tops: dict[str, _Top] = {}
        self.seen: dict[int, Seen] = {}
        self.started = 0
        # The sampler refreshes while the fault thread kills and restarts.
        self._lock = threading.RLock()

    def start(self) -> None:
        for config in self.configs:
            self._start(config)

    def _start(self, config: Config) -> None:
        with self._lock:
            self.started += 1
            top = _Top(config, self.urls[config.group], self.env, self.log_dir, self.started)
            self.tops[config.name] = top
            self.refresh()

    def refresh(self) -> dict[int, Seen]:
        """Record the worker processes running now; returns them by pid."""
        with self._lock:
            return self._refresh(time.time())

    def _refresh(self, now: float) -> dict[int, Seen]:
        live: dict[int, Seen] = {}
        for top in self.tops.values():
            if top.proc.poll() is not None:
                continue
            pids = [(top.proc.pid, "worker")]
            if top.config.processes > 1:
                pids = [(top.proc.pid, "supervisor"),
                        *((pid, "worker") for pid in children(top.proc.pid))]
            for pid, role in pids:
                seen = self.seen.setdefault(pid, Seen(pid, top.config, now, role))
                if seen.killed_at is None:
                    live[pid] = seen
        return live

    def killable(self) -> list[Seen]:
        return [s for s in self.refresh().values() if s.config.killable and s.role == "worker"]

    def kill(self, victim: Seen) -> float:
        """``kill -9`` one worker process; a single-process configuration is started again at
        once (a supervisor replaces its own child). Returns the time of the kill."""
        with self._lock:
            at = time.time()
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
            victim.killed_at = at
            top = self.tops[victim.config.name]
            if top.proc.pid == victim.pid:
                top.reap()
                self._start(victim.config)
            return at

    def live_slots(self, group: str) -> int:
        """Slots of ``group``'s worker processes running now."""
        return sum(seen.config.slots for seen in self.refresh().values()
                   if seen.role == "worker" and seen.config.group == group)

    def dead_tops(self) -> list[str]:
        """Configurations whose ``pyresque-work`` exited without being killed (a crash)."""
        return [name for name, top in self.tops.items() if top.proc.poll() is not None]

    def logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def close(self, timeout: float = 30.0) -> dict[str, Optional[int]]:
        """TERM every worker, wait up to ``timeout`` s, then KILL; returns the exit codes."""
        for top in self.tops.values():
            if top.proc.poll() is None:
                top.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, Optional[int]] = {}
        for name, top in self.tops.items():
            try:
                codes[name] = top.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for pid in children(top.proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                top.proc.kill()
                codes[name] = None
            top.reap()
        return codes


def _worker_env(ledger_url: str) -> dict[str, str]:
    """This checkout's package and ``soakkit`` importable, the ledger named, nothing else
    from the caller's ``PYRESQUE_*`` settings, glibc's mmap threshold fixed."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYRESQUE_", "QUEUE", "RESQUE_", "REDIS_URL", "INTERVAL"))}
    path = [str(ROOT), str(SCRIPTS), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    env["SOAK_LEDGER_URL"] = ledger_url
    env["PYTHONUNBUFFERED"] = "1"
    # glibc raises its mmap threshold to the size of the last mmapped block freed, so after the
    # first 1 MB payload every later one comes from a thread's arena, which keeps the memory:
    # RSS then climbs in 2 MB steps until each arena has held its peak, for minutes, with no
    # leak at all (+14 % in a 300 s soak by default, -3 to +5 % with this). A fixed threshold
    # (glibc's initial one, 128 KiB) returns every large block at once, so the RSS criterion
    # sees leaks rather than the allocator's high-water mark.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    return env
