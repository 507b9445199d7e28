"""The benchmark behind ``scripts/bench.py``, one module per concern.

``main`` drives the runs; ``common`` holds the settings and rows; ``jobs`` the jobs and the
per-framework adapters (``peers`` runs RQ, dramatiq and arq workers, ``sidekiq`` the Ruby
peer); ``workloads``, ``scale`` and ``workflow`` the workloads; ``proc`` the worker subprocesses;
``redis_server`` the private Redis and its counters; ``report`` the table and JSON;
``baseline`` our worker at another git revision (``--baseline``) and ``compare`` its before /
after table.
``series`` and ``tracing`` are standalone benchmarks of the time series and of tracing
(``python scripts/benchkit/series.py``, ``python scripts/benchkit/tracing.py``).
"""
