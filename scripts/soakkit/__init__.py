"""The soak behind ``scripts/soak.py``, one module per concern.

``main`` drives the phases (``phases`` holds the waits between them); ``servers`` starts the
Redis servers under fault and the ledger; ``fleet`` the worker processes; ``jobs`` is the app
every worker loads, recording each run in the ``ledger``; ``enqueuer`` makes the load and
``faults`` the seeded fault schedule; ``monitor`` samples worker memory and counts keys;
``workflow`` adds results, dependencies and batches (with Ruby members run by ``ruby``). The
verdict: ``accounting`` (lost, wrong and duplicated jobs), ``recovery`` (how soon every slot
claimed after each fault), ``leaks`` (RSS and keys), ``wfread`` and ``wfcheck`` (callbacks
exactly once, no dependent before its dependency, every kept result there) and ``report``
(the tables).
"""
