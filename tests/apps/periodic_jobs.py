"""A worker app with a code-declared cron schedule, for tests/test_periodic.py.

Loaded with ``pyresque-work --app periodic_jobs``; ``PeriodicTick`` fires every minute into
the ``periodic-e2e`` queue, which the test workers do not work, so the queue shows exactly
what the workers enqueued.
"""

from __future__ import annotations

from pyresqueworker import job


@job("PeriodicTick", queue="periodic-e2e", cron="* * * * *")
def periodic_tick() -> None:
    """Never run by the tests' workers (they work other queues)."""
