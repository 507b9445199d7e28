"""Sidekiq (Ruby) as an optional peer of ``scripts/bench.py``.

Used only when Debian's ``ruby-sidekiq`` (or the gem) is installed: ``ruby -e 'require
"sidekiq"'`` must work and the ``sidekiq`` command must exist; otherwise the rows are skipped
with a note. Jobs go to Redis database 1 (Sidekiq's own keyspace, no namespace gem needed),
pushed in Sidekiq's client format (``SADD queues`` + ``LPUSH queue:<name>`` of its JSON hash);
the ``BenchMark`` job stamps ``bench:<tag>`` in database 0 like every other framework's.
Sidekiq logs at WARN, as the other workers do in the bench.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Optional

import redis

__all__ = ["available", "enqueue", "version", "worker_argv", "worker_env"]

QUEUE = "bench"
DB = 1
_CLASS = {"noop": "BenchNoop", "payload": "BenchNoop", "sleep": "BenchSleep",
          "mark": "BenchMark"}

RUBY_JOBS = """\
require "sidekiq"
require "redis"

Sidekiq.configure_server { |config| config.logger.level = Logger::WARN }

class BenchNoop
  include Sidekiq::Worker
  def perform(*); end
end

class BenchSleep
  include Sidekiq::Worker
  def perform(seconds)
    sleep seconds
  end
end

class BenchMark
  include Sidekiq::Worker
  def perform(tag, sleep_s)
    now = Time.now.to_f
    if sleep_s.to_f > 0
      sleep sleep_s
      now = Time.now.to_f if tag == "end"
    end
    conn = (Thread.current[:bench_redis] ||= Redis.new(url: ENV.fetch("BENCH_REDIS_URL"),
                                                       id: "bench-mark"))
    conn.rpush("bench:#{tag}", now.to_s)
  end
end
"""


@functools.cache
def version() -> Optional[str]:
    """Sidekiq's version, or None when Ruby cannot load it."""
    if shutil.which("ruby") is None:
        return None
    try:
        out = subprocess.run(["ruby", "-e", 'require "sidekiq"; print Sidekiq::VERSION'],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def available() -> Optional[str]:
    """None if Sidekiq can be benchmarked here, else why not."""
    if shutil.which("ruby") is None:
        return "not installed (ruby): apt-get install ruby-sidekiq"
    if version() is None:
        return "not installed (ruby cannot require sidekiq): apt-get install ruby-sidekiq"
    if shutil.which("sidekiq") is None:
        return "not installed (no sidekiq command): apt-get install ruby-sidekiq"
    return None


def _jobs_file() -> str:
    digest = hashlib.sha256(RUBY_JOBS.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"pyresque-bench-sidekiq-{digest}.rb")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(RUBY_JOBS)
        os.replace(tmp, path)
    return path


def worker_argv(concurrency: Optional[int]) -> list[str]:
    """``sidekiq`` on the bench queue (``concurrency`` None: Sidekiq's default)."""
    argv = [shutil.which("sidekiq") or "sidekiq", "-r", _jobs_file(), "-q", QUEUE]
    return argv if concurrency is None else [*argv, "-c", str(concurrency)]


def _db_url(url: str, db: int) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


def worker_env(url: str) -> dict[str, str]:
    """Sidekiq reads its Redis from ``REDIS_URL``: database 1 of the bench's server."""
    return {"REDIS_URL": _db_url(url, DB), "APP_ENV": "production"}


def enqueue(url: str, items: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
    """Push ``items`` in order as ``Sidekiq::Client.push`` does (``LPUSH``; BRPOP takes the
    oldest first), 1,000 to a pipeline."""
    conn = redis.Redis.from_url(_db_url(url, DB))
    now = time.time()
    try:
        for start in range(0, len(items), 1000):
            payloads = [json.dumps({"retry": True, "queue": QUEUE, "class": _CLASS[kind],
                                    "args": list(args), "jid": os.urandom(12).hex(),
                                    "created_at": now, "enqueued_at": now})
                        for kind, args in items[start:start + 1000]]
            pipe = conn.pipeline(transaction=False)
            pipe.sadd("queues", QUEUE)
            pipe.lpush(f"queue:{QUEUE}", *payloads)
            pipe.execute()
    finally:
        conn.close()
