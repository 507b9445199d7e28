"""Unique jobs: at most one job of a kind queued or scheduled at once (gocraft/work's semantics).

``enqueue_unique`` takes a lock ``<ns>pyresque:unique:<digest>`` (``SET NX`` with a 24 h
expiry, so a lost job cannot block its kind for ever) and pushes the job in the same script:
both happen or neither. The payload carries the digest as its last field, ``unique_key``, and
the worker's claim script deletes the lock when it takes the job — so a job of the kind may be
queued again as soon as one starts running. Ruby workers ignore the field; a job they run keeps
its lock until the expiry (documented in the README).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any, Callable, Optional

from redis.client import Pipeline

from . import wire
from .delayed import PUSH_OR_SCHEDULE_LUA, When, epoch_seconds
from .resp import LuaScript

__all__ = ["UNIQUE_TTL", "UniqueJobs", "unique_digest"]

#: The safety expiry of a uniqueness lock (gocraft/work: 24 hours).
UNIQUE_TTL = 24 * 3600

# KEYS: 1 lock, 2 queues, 3 queue:<q>, 4 delayed_queue_schedule, 5 delayed:<ts>,
#  6 timestamps:<item>
# ARGV: 1 expiry, 2 queue name, 3 item, 4 timestamp ("0": push now), 5 "delayed:<ts>"
_UNIQUE_PUSH_SOURCE = PUSH_OR_SCHEDULE_LUA + r"""
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
push_or_schedule(ARGV[4], ARGV[3], KEYS[2], KEYS[3], ARGV[2], KEYS[4], KEYS[5], KEYS[6], ARGV[5])
return 1
"""
_UNIQUE_PUSH = LuaScript(_UNIQUE_PUSH_SOURCE)


def unique_digest(class_name: str, args: Any, by_key: Any = None, *, keyed: bool = False) -> str:
    """The lock's name: a SHA-1 of the class with its args, or with the caller's key."""
    basis = class_name + "\x00" + ("key\x00" + wire.dumps(by_key) if keyed else wire.dumps(args))
    return hashlib.sha1(basis.encode("utf-8", "surrogatepass")).hexdigest()


def with_unique_key(encoded: str, digest: str) -> str:
    """The encoded job or delayed item with ``"unique_key"`` as its last field."""
    return wire.with_fields(encoded, {"unique_key": digest})


class UniqueJobs:
    """``enqueue_unique*`` for a :class:`~pyresqueworker.client.Client`."""

    def __init__(self, client: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.keys: wire.Keys = client.keys
        self.clock = clock

    def enqueue(self, queue: Optional[str], class_name: str, args: tuple[Any, ...], *,
                by_key: Any = None, keyed: bool = False, when: Optional[When] = None,
                pipeline: Optional[Pipeline] = None) -> bool:
        """Push (or schedule) the job unless one of its kind is queued or scheduled already.

        Returns whether it was pushed. With ``pipeline`` the script is only queued on the
        caller's pipeline and this returns True: the pipeline's result for it says (1 or 0).
        """
        queue = self.client.queue_or_raise(class_name, queue)
        self.client.validate(queue, class_name)
        digest = unique_digest(class_name, list(args), by_key, keyed=keyed)
        keys = self.keys
        now = math.floor(self.clock())
        timestamp = epoch_seconds(when) if when is not None else 0
        if timestamp <= now:  # due already: straight to the queue, as resque-scheduler does
            item = with_unique_key(wire.encode_job(class_name, args), digest)
            timestamp, expiry = 0, UNIQUE_TTL
        else:
            item = with_unique_key(wire.encode_delayed_item(class_name, args, queue), digest)
            expiry = UNIQUE_TTL + timestamp - now
        script_keys = [keys.unique(digest), keys.queues, keys.queue(queue),
                       keys.delayed_schedule, keys.delayed(timestamp), keys.timestamps(item)]
        script_args = [expiry, queue, item, str(timestamp), keys.delayed_member(timestamp)]
        if pipeline is not None:
            pipeline.eval(_UNIQUE_PUSH_SOURCE, len(script_keys), *script_keys, *script_args)
            return True
        return bool(_UNIQUE_PUSH(self.client.redis, script_keys, script_args))
