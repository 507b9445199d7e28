"""What a job is in Python: the registry of handlers, hooks, ActiveJob payloads, retry
policy, typed job handles, code-declared schedules, tracing spans and the inline test runner.

May import ``protocol`` and ``log``; never the client, the worker or anything above them
(a handle reaches its client through the small interface in ``handles``).
"""
