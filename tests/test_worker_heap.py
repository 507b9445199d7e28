"""A worker keeps the heap its large payloads freed: the next job's objects do not fault in
fresh pages (worker/_heap.py)."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from pyresqueworker.worker._heap import keep_freed_heap

glibc_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Real pyresque-work processes on 1 MB jobs: one with 2 jobs, one with 42. Start-up and exit
# are in both, so their page faults differ by what 40 jobs cost.
_APP = textwrap.dedent("""
    from pyresqueworker import job

    @job("Big", queue="big")
    def big(data):
        pass
""")
_WORK = "import sys; from pyresqueworker.cli.work import work_main; sys.exit(work_main())"


def _faults_per_job(r: redis.Redis, redis_url: str, app: Path, env: dict[str, str]) -> float:
    data = "".join(random.Random(1).choices(string.ascii_letters + string.digits, k=1_000_000))

    def faults(jobs: int) -> int:
        r.rpush("resque:queue:big", *[json.dumps({"class": "Big", "args": [data]})] * jobs)
        worker = subprocess.Popen([sys.executable, "-c", _WORK, "--app", str(app), "--redis",
                                   redis_url, "--queues", "big", "--exit-on-complete"], env=env)
        _, status, usage = os.wait4(worker.pid, 0)
        assert status == 0 and r.llen("resque:queue:big") == 0
        return usage.ru_minflt

    few = faults(2)
    return (faults(42) - few) / 40


@glibc_linux
def test_large_payloads_do_not_fault_the_heap_in_again_job_after_job(
    r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    app = tmp_path / "big_jobs.py"
    app.write_text(_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    # 1 MB is 256 pages: without the kept heap it was ~700 faults a job (three 1 MB objects).
    assert _faults_per_job(r, redis_url, app, env) < 64
    assert r.llen("resque:failed") == 0


def test_malloc_tuned_in_the_environment_is_left_as_the_user_set_it() -> None:
    assert keep_freed_heap({"MALLOC_TRIM_THRESHOLD_": "131072"}) is False
    assert keep_freed_heap({"MALLOC_MMAP_THRESHOLD_": "131072"}) is False
    assert keep_freed_heap({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}) is False


@glibc_linux
def test_the_thresholds_are_set_on_glibc() -> None:
    done = subprocess.run(
        [sys.executable, "-c",
         "from pyresqueworker.worker._heap import keep_freed_heap; print(keep_freed_heap({}))"],
        capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
