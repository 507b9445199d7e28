"""The bottom layer: what Resque's keys and payloads look like, and how to reach Redis.

Owns the wire format and key names (``wire``), failure entries (``failure``), the
``Job``/``JobCall`` dataclasses (``job``), queue specs (``queues``), where the Redis URL and
namespace come from (``urls``), connections (``connection``), Redis error classification
(``redis_errors``), text from Redis escaped for display (``safe_text``) and the private RESP
fast path, claim Lua and outage bookkeeping. Imports nothing of ours but ``pyresqueworker.log``.
"""
