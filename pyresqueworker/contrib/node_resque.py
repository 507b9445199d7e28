"""Sharing queues with node-resque: release its ``QueueLock`` when a Python worker runs the job.

node-resque's ``QueueLock`` plugin takes ``lock:<class>:<queue>:<JSON of args>`` when a job is
enqueued (``SETNX``, expiring after the plugin's ``lockTimeout``, one hour by default) and its
worker deletes it when the job starts. A Python worker knows nothing of the plugin, so without
this middleware node-resque refuses to enqueue the same job again until the lock expires.
Install it in the worker's app::

    from pyresqueworker import middleware
    from pyresqueworker.contrib.node_resque import release_queue_locks

    middleware(release_queue_locks())      # the worker's Redis, from PYRESQUE_REDIS / REDIS_URL

The lock's name comes from the queued bytes themselves (node-resque writes
``{"class":…,"queue":…,"args":<JSON.stringify(args)>}``), so it is exact whatever the
arguments; payloads of any other shape (Ruby's, ours) are left alone. A lock under a custom
``key`` option of the plugin cannot be known here.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from ..client._client import Client
from ..protocol.job import Job, JobCall

__all__ = ["queue_lock_key", "release_queue_locks"]

_CLASS, _QUEUE, _ARGS = '{"class":', ',"queue":', ',"args":'


def queue_lock_key(job: Job, namespace: str = "resque:") -> Optional[str]:
    """The ``QueueLock`` key node-resque took for ``job``, or None for a payload it did not
    write (the plugin names it after the queue the worker took the job from)."""
    try:
        text = job.raw.decode("utf-8")
        if not text.startswith(_CLASS) or not text.endswith("}"):
            return None
        decoder = json.JSONDecoder()
        class_name, end = decoder.raw_decode(text, len(_CLASS))
        if not text.startswith(_QUEUE, end):
            return None
        _queue, end = decoder.raw_decode(text, end + len(_QUEUE))
        if not text.startswith(_ARGS, end):
            return None
        args_json = text[end + len(_ARGS):-1]
        if not isinstance(json.loads(args_json), list):
            return None
    except (ValueError, RecursionError):  # not UTF-8, not JSON
        return None
    if not isinstance(class_name, str):
        return None
    return f"{namespace}lock:{class_name}:{job.queue}:{args_json}"


def release_queue_locks(
    client: Optional[Client] = None,
) -> Callable[[Job, JobCall, Callable[[], Any]], Any]:
    """Middleware deleting node-resque's ``QueueLock`` key of each job before it runs, as
    node-resque's own worker does. ``client`` gives the Redis and namespace (by default a
    :class:`~pyresqueworker.Client` from the environment, made at the first job)."""
    made: list[Client] = [client] if client is not None else []

    def release(job: Job, call: JobCall, call_next: Callable[[], Any]) -> Any:
        if not made:
            made.append(Client())
        key = queue_lock_key(job, made[0].keys.ns)
        if key is not None:
            made[0].redis.delete(key)
        return call_next()

    return release
