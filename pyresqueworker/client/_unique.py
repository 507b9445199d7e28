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

from ..protocol import wire
from ..protocol._resp import LuaScript
from ._commands import Batch, Op, ScriptCall, run
from ._enqueue_ops import resolve_queue, validate
from .delayed import PUSH_OR_SCHEDULE_LUA, When, epoch_seconds

__all__ = ["UNIQUE_TTL", "UniqueJobs", "unique_digest"]

#: The safety expiry of a uniqueness lock (gocraft/work: 24 hours).
UNIQUE_TTL = 24 * 3600

# KEYS: 1 lock, 2 queues, 3 queue:<q>, 4 delayed_queue_schedule, 5 delayed:<ts>,
#  6 timestamps:<item>
# ARGV: 1 expiry, 2 queue name, 3 item, 4 timestamp ("0": push now), 5 "delayed:<ts>"
_UNIQUE_PUSH = LuaScript(PUSH_OR_SCHEDULE_LUA + r"""
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
push_or_schedule(ARGV[4], ARGV[3], KEYS[2], KEYS[3], ARGV[2], KEYS[4], KEYS[5], KEYS[6], ARGV[5])
return 1
""")


def unique_digest(class_name: str, args: Any, by_key: Any = None, *, keyed: bool = False) -> str:
    """The lock's name: a SHA-1 of the class with its args, or with the caller's key."""
    basis = class_name + "\x00" + ("key\x00" + wire.dumps(by_key) if keyed else wire.dumps(args))
    return hashlib.sha1(basis.encode("utf-8", "surrogatepass")).hexdigest()


def with_unique_key(encoded: str, digest: str) -> str:
    """The encoded job or delayed item with ``"unique_key"`` as its last field."""
    return wire.with_fields(encoded, {"unique_key": digest})


class UniqueJobs:
    """``enqueue_unique*`` for a :class:`~pyresqueworker.Client` (or, through
    :meth:`op`, for the asyncio client)."""

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
        op = self.op(queue, class_name, args, by_key=by_key, keyed=keyed, when=when)
        return run(self.client.redis, op, pipeline)

    def op(self, queue: Optional[str], class_name: str, args: tuple[Any, ...], *,
           by_key: Any = None, keyed: bool = False, when: Optional[When] = None) -> Op[bool]:
        """The operation behind :meth:`enqueue` (see :mod:`pyresqueworker.client._commands`)."""
        queue = resolve_queue(self.client.queue_for, class_name, queue)
        validate(queue, class_name)
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
        replies = yield Batch([ScriptCall(_UNIQUE_PUSH, script_keys, script_args)], write=True)
        return bool(replies[0]) if replies else True
