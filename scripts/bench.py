#!/usr/bin/env python3
"""Benchmark pyresqueworker side by side with RQ, dramatiq, arq and Sidekiq on a private Redis.

    python scripts/bench.py                 # full: 20,000-job drains, every workload 3 times
    python scripts/bench.py --quick         # seconds: small sizes, 1 run (the CI smoke test)
    python scripts/bench.py --only drain,latency --peers rq --runs 5 --json out.json
    python scripts/bench.py --only payload,ioscale,logging,idle --runs 1
    python scripts/bench.py --baseline main --only drain,payload,ioscale,idle,latency --peers ''
    python scripts/bench.py --only drain,workflow --peers ''     # + results and batches

Workloads: drain (queued no-op jobs), floor (a bare socket replaying our per-job Redis bytes),
enqueue (single calls and bulk), io (50 ms sleeps at concurrency 100), latency (one job at a
time into an idle worker, also from the last of five queues), payload (no-op jobs carrying
100 B / 10 KB / 1 MB), ioscale (``await asyncio.sleep(0.05)`` jobs on ``--execution asyncio``
at C = 100 / 1,000 / 10,000), logging (the drain at ``--log-level info`` vs ``warning``) and
idle (commands/s and Redis CPU of idle workers, N processes x S slots x Q queues); and, only
when named in ``--only``, workflow (the drain with every job keeping its result, as rows under
the plain drain's, and a 10,000-job batch: last job end to callback enqueued, the opening
call, Redis memory while pending and once completed). Each value
is the median of ``--runs`` runs with min-max, systems interleaved within each run. Redis runs
on core 0 and the workers on core 1 (``taskset``). Worker runs also report, per job, Redis
commands (including those inside Lua scripts) and round trips (``INFO`` deltas; a round trip
is one server read event), worker and Redis CPU time (start-up subtracted), and the worker's
peak RSS. Peers come from the optional ``[bench]`` extra (Sidekiq from Debian's
``ruby-sidekiq``) and are skipped, with a note, when missing: nothing is installed here.
``--baseline REF`` also runs our worker at git revision REF (from a temporary ``git archive``)
beside each of ours, and adds a before / after table (after / before, flagged outside +-5 %).
The code is the ``benchkit`` package beside this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# benchkit, this checkout's package first, and tests/servers.py (which redis-server to run)
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from benchkit.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
