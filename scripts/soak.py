#!/usr/bin/env python3
"""Soak pyresqueworker: a mixed load through real workers under a random schedule of faults.

    python3 scripts/soak.py                      # 30 minutes
    python3 scripts/soak.py --seconds 75         # what CI runs (scripts/test)
    python3 scripts/soak.py --seconds 600 --seed 7 --keep-logs

Two groups of ``pyresque-work`` processes (threads with concurrency, asyncio, --fork-per-job,
--processes 2) run small and 1 MB jobs, failures, retries, delayed and unique jobs, sync and
async handlers. Group ``a`` reaches its Redis (AOF, fsync always) through a TCP fault proxy;
group ``b`` a Sentinel-managed master. A seeded schedule (``--seed``) kills workers (``kill
-9``), cuts, black-holes and slows connections, fills Redis's memory, restarts Redis and fails
the master over. A ledger Redis nobody faults records every enqueue and every run. The run
prints its tables and exits 1 unless: 0 jobs lost; at most 0.1 % run twice, each after a kill
or failover; every slot claims again within 5 s of each fault's end; worker RSS grows at most
10 % after warm-up; Redis keys per pattern return to their baseline; and for the workflow
load (results, ``depends_on`` chains, batches of 100 with Python and Ruby members) each batch
callback is queued exactly once, no dependent starts before its dependency succeeded, and
every success keeps its result. docs/reliability.md ("Soak") says how each is measured. The
code is the ``soakkit`` package beside this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# soakkit, this checkout's package first, and the fault tests' servers, proxy and Sentinels.
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "tests")]

from soakkit.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
