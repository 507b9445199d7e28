"""Ruby members of the workflow load: ``tests/ruby/tracking_worker.rb`` on group ``a``'s Redis.

That loop runs Resque 3.0's ``Resque::Job`` on job classes that extend ``PyResque::Tracking``
(``examples/ruby_client/pyresque_tracking.rb``), which records each job's end with the same
Lua script as the Python worker: a batch with Ruby and Python members completes, and its
callbacks are enqueued, whichever side ends last. The soak puts a few ``RubySquare`` (result
``n * n``) and ``RubyBoom`` (fails) members in group ``a``'s batches, on :data:`QUEUE`.

It is a test's worker, not a production one: it pops with ``LPOP`` (a job it holds when it
dies is gone) and exits on the first Redis error. So it reaches Redis directly, not through the
fault proxy (cuts, black holes and latency are the Python workers' to ride), and the soak
starts it again whenever it exits (a Redis restart or an OOM window can end it); each exit is
counted, and a Ruby member that never reported while the worker was away is "uncertain".

When ``ruby``, the two files, the redis and oj gems or a ``ready`` line are missing, the Ruby
part is skipped and :attr:`RubyWorker.skipped` says why (the report shows it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Optional

__all__ = ["QUEUE", "RubyWorker"]

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "ruby" / "tracking_worker.rb"
MODULE = ROOT / "examples" / "ruby_client" / "pyresque_tracking.rb"
QUEUE = "soak_a_ruby"  # served by the Ruby worker only (group a)
READY_WITHIN = 30.0


class RubyWorker:
    """One supervised ``tracking_worker.rb`` on :data:`QUEUE` (see the module)."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.url, self.log_dir = redis_url, log_dir / "ruby"
        self.ruby = shutil.which("ruby")
        self.skipped = ""  # why the Ruby part does not run ("": it does)
        self.exits: list[tuple[float, Optional[int]]] = []  # (when, code) of unplanned exits
        self.started = 0
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="ruby-worker", daemon=True)

    @property
    def running(self) -> bool:
        return not self.skipped

    def start(self) -> bool:
        """Check the files and start the worker; False (with :attr:`skipped`) if it cannot."""
        self.skipped = self._why_not()
        if self.skipped:
            return False
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._spawn()
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            text = log_path.read_text(encoding="utf-8", errors="replace")
            if "ready " in text:
                self._thread.start()
                return True
            if self._proc is not None and self._proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        self.stop()
        self.skipped = f"the Ruby worker did not start ({tail[0][:120] if tail else 'no output'})"
        return False

    def _why_not(self) -> str:
        if self.ruby is None:
            return "no ruby on PATH"
        for path in (WORKER, MODULE):
            if not path.is_file():
                return f"{path.relative_to(ROOT)} is missing"
            check = subprocess.run([self.ruby, "-c", str(path)], capture_output=True,
                                   check=False, timeout=60)
            if check.returncode != 0:
                return f"ruby -c {path.relative_to(ROOT)} failed"
        return ""

    def _spawn(self) -> Path:
        assert self.ruby is not None
        with self._lock:
            self.started += 1
            log_path = self.log_dir / f"tracking-worker-{self.started}.log"
            if self._log is not None:
                self._log.close()
            self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
            env = {**os.environ, "REDIS_URL": self.url, "PYRESQUE_TRACKING": str(MODULE)}
            self._proc = subprocess.Popen([self.ruby, str(WORKER), QUEUE], env=env, cwd=ROOT,
                                          stdin=subprocess.DEVNULL, stdout=self._log,
                                          stderr=subprocess.STDOUT)
            return log_path

    def _supervise(self) -> None:
        """Start the worker again each time it exits, until :meth:`stop`."""
        while not self._halt.wait(0.2):
            proc = self._proc
            if proc is None or proc.poll() is None:
                continue
            with self._lock:
                if self._halt.is_set():
                    return
                self.exits.append((time.time(), proc.returncode))
            if not self._halt.wait(0.3):
                self._spawn()

    def stop(self) -> None:
        """TERM the worker (it finishes the job it holds), KILL it after 10 s."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(5)
            if self._log is not None:
                self._log.close()
                self._log = None
