"""The bottom layer: what Resque's keys and payloads look like, and how to reach Redis.

Owns the wire format and key names (``wire``), failure entries (``failure``), the
``Job``/``JobCall`` dataclasses (``job``), queue specs (``queues``), Redis URLs and
connections (``connection``), Redis error classification (``redis_errors``) and the private
RESP fast path, claim Lua and outage bookkeeping. Imports nothing of ours but
``pyresqueworker.log``.
"""
