"""``pyresque``, the admin command line: queues, workers, failures, schedules, history, web.

The click group is :data:`pyresqueworker.cli.admin.cli.main` (the ``pyresque`` console script).
"""
