"""Running jobs: claiming them (``_claim``), running them in slots (``_slot``,
``_aio_slot``, ``isolation``), reporting their outcome and failures (``_job_outcome``,
``_retrying``), and the process around that: supervisor, housekeeping, pruning of dead
workers, the delayed-job scheduler, periodic jobs, metrics and the time series.

May import ``client``, ``jobs``, ``protocol`` and ``log``; ``run_worker`` in ``runner`` is
its entry point.
"""
