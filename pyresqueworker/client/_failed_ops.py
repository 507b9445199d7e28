"""The ``failed`` list's operations, written once for the blocking and asyncio clients (spec §10).

resque-web names a failure by its absolute list index, so this module only ever edits entries
in place (``LSET``) or removes them with Resque's ``LSET ""`` + ``LREM`` sentinel trick; it never
pushes to ``failed`` at all. Where Ruby reads an entry and writes it back in two steps (and can
overwrite a neighbour when another process removes an entry in between), the write here is a
compare-and-set script: it only touches index *i* if *i* still holds the bytes that were read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, Union

import redis

from ..jobs.activejob import job_class
from ..protocol import wire
from ..protocol._resp import LuaScript
from ._commands import Batch, Op, ScriptCall, call, cmd, send

__all__ = [
    "CHUNK",
    "FailedEntryError",
    "FailedOps",
    "FailedQueueBusyError",
    "FailureFilter",
    "Progress",
    "Raw",
    "decode_entry",
    "ruby_splat",
]

# What redis-py hands back for a list item (bytes, or str on a decode_responses client).
Raw = Union[bytes, str]

# Entries read per LRANGE when walking the whole list; bounds memory and script argument size.
CHUNK = 500
# How often ``requeue`` re-reads an entry that changed under it before giving up.
_CAS_ATTEMPTS = 5

#: ``progress(entries examined, entries in the snapshot)``, called after every batch.
Progress = Callable[[int, int], None]

# KEYS: failed, queues, queue:<q>. ARGV: index, bytes read, new entry, queue name, job JSON.
# The entry is rewritten and the job pushed only if the index still holds what was read.
_REQUEUE_LUA = LuaScript("""
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[5])
return 1
""")

# The same for a whole batch, one round trip and one script call for all of it. KEYS: failed,
# queues, then each queue key of the batch. ARGV: groups of six: index, bytes read, new entry,
# queue name, job JSON, position of the queue's key in KEYS. Returns how many were requeued.
_REQUEUE_MANY_LUA = LuaScript("""
local done = 0
for i = 1, #ARGV, 6 do
  if redis.call('LINDEX', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('LSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('SADD', KEYS[2], ARGV[i + 3])
    redis.call('RPUSH', KEYS[tonumber(ARGV[i + 5])], ARGV[i + 4])
    done = done + 1
  end
end
return done
""")

# KEYS: failed. ARGV: index1, bytes1, index2, bytes2, ... Blank every entry that still holds
# the bytes read, then drop all blanks at once, so no index shifts while the script runs.
# The blank is Ruby's own sentinel (""), which no writer ever stores as a real failure.
_REMOVE_MATCHING_LUA = LuaScript("""
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('LINDEX', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('LSET', KEYS[1], ARGV[i], '')
    removed = removed + 1
  end
end
if removed > 0 then redis.call('LREM', KEYS[1], 0, '') end
return removed
""")


# KEYS: failed. ARGV: indexes. Blank every entry at those indexes (unless already blank: a
# concurrent Ruby remove is in flight there), then drop all blanks at once; returns the
# removed ``{index, bytes}`` pairs, flattened. One script, so no index shifts in between.
_REMOVE_AT_LUA = LuaScript("""
local removed = {}
for i = 1, #ARGV do
  local raw = redis.call('LINDEX', KEYS[1], ARGV[i])
  if raw and raw ~= '' then
    redis.call('LSET', KEYS[1], ARGV[i], '')
    removed[#removed + 1] = ARGV[i]
    removed[#removed + 1] = raw
  end
end
if #removed > 0 then redis.call('LREM', KEYS[1], 0, '') end
return removed
""")


class FailedEntryError(ValueError):
    """A failure entry that cannot be requeued (not JSON, or no ``queue`` / ``payload.class``)."""


class FailedQueueBusyError(RuntimeError):
    """An entry kept changing between read and write (another process is editing the list)."""


def decode_entry(raw: Optional[Raw]) -> Optional[dict[str, Any]]:
    """A failure entry as a dict, or ``None`` where resque-web shows "could not be parsed"."""
    if raw is None:
        return None
    try:
        value = wire.loads(raw)
    except wire.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def ruby_splat(args: Any) -> list[Any]:
    """``*item['payload']['args']`` as Ruby evaluates it when requeueing.

    ``nil`` splats to nothing, an Array to its elements, a Hash to its ``[key, value]`` pairs
    and any other value to itself.
    """
    if args is None:
        return []
    if isinstance(args, list):
        return list(args)
    if isinstance(args, dict):
        return [[key, value] for key, value in args.items()]
    return [args]


def _is_retried(entry: dict[str, Any]) -> bool:
    # Ruby tests ``if job['retried_at']``: only nil (JSON null) and false are falsy.
    value = entry.get("retried_at")
    return value is not None and value is not False


@dataclass(frozen=True)
class FailureFilter:
    """Which failure entries an operation applies to; every criterion given must hold.

    ``class_name`` matches the payload's ``class`` or, for an ActiveJob failure, its
    ``job_class`` (so ``HelloJob`` finds Rails jobs as resque-web lists them).
    """

    queue: Optional[str] = None
    class_name: Optional[str] = None
    skip_retried: bool = False

    def __call__(self, entry: dict[str, Any]) -> bool:
        if self.queue is not None and entry.get("queue") != self.queue:
            return False
        if self.class_name is not None:
            payload = entry.get("payload")
            name = payload.get("class") if isinstance(payload, dict) else None
            if self.class_name not in (name, job_class(payload)):
                return False
        return not (self.skip_retried and _is_retried(entry))


class _RequeuePlan:
    """What requeueing one entry writes: the marked entry and the job to push."""

    __slots__ = ("entry", "job", "queue", "retried_at")

    def __init__(self, item: dict[str, Any], retried_at: str) -> None:
        queue = item.get("queue")
        payload = item.get("payload")
        if not isinstance(queue, str) or not queue:
            raise FailedEntryError("the failure has no queue to requeue to")
        if not isinstance(payload, dict):
            raise FailedEntryError("the failure has no payload")
        class_name = payload.get("class")
        if not isinstance(class_name, str) or not class_name:
            raise FailedEntryError("the failure's payload has no class")
        # Assigning keeps an existing key's position, as Ruby's Hash#[]= does; a new key
        # goes last, which is where resque-web's requeue puts it.
        item["retried_at"] = retried_at
        try:
            self.entry = wire.dumps(item)
            # Job.create(queue, class, *args): class and args only, extra keys are dropped.
            self.job = wire.encode_job(class_name, ruby_splat(payload.get("args")))
        except (TypeError, ValueError) as exc:
            raise FailedEntryError(f"the failure cannot be re-encoded: {exc}") from None
        self.queue = queue
        self.retried_at = retried_at


class FailedOps:
    """The operations on ``<namespace>failed`` (see :mod:`pyresqueworker.client._commands`), run by
    :class:`~pyresqueworker.client.failed_queue.FailedQueue` and by the asyncio client."""

    def __init__(self, keys: wire.Keys) -> None:
        self.keys = keys

    def count(self) -> Op[int]:
        """``LLEN failed``."""
        return int((yield from call("LLEN", self.keys.failed)))

    def entries(self, start: int, count: int) -> Op[list[Optional[dict[str, Any]]]]:
        """Decoded entries ``start .. start+count-1``."""
        if count <= 0:
            return []
        raws = yield from call("LRANGE", self.keys.failed, start, start + count - 1)
        return [decode_entry(raw) for raw in raws]

    def raw(self, index: int) -> Op[Optional[Raw]]:
        """Entry ``index`` as stored."""
        value: Optional[Raw] = yield from call("LINDEX", self.keys.failed, index)
        return value

    def requeue(self, index: int, if_entry: Optional[Callable[[Raw], bool]]) -> Op[str]:
        """Mark entry ``index`` retried and push its job, compare-and-set on the bytes read."""
        for _ in range(_CAS_ATTEMPTS):
            raw = yield from self.raw(index)
            if raw is None:
                raise IndexError(f"there is no failure at index {index}")
            if if_entry is not None and not if_entry(raw):
                raise FailedEntryError(f"the failure at index {index} is not the one expected")
            item = decode_entry(raw)
            if item is None:
                raise FailedEntryError(f"the failure at index {index} is not a JSON object")
            plan = _RequeuePlan(item, wire.failed_at())
            keys = [self.keys.failed, self.keys.queues, self.keys.queue(plan.queue)]
            args = [index, raw, plan.entry, plan.queue, plan.job]
            if (yield Batch([ScriptCall(_REQUEUE_LUA, keys, args)]))[0]:
                return plan.retried_at
        raise FailedQueueBusyError(f"the failure at index {index} kept changing; try again")

    def requeue_all(self) -> Op[int]:
        """Requeue every entry that can be (retried ones too, as Ruby does)."""
        return self.requeue_where(lambda item: True)

    def requeue_queue(self, queue: str) -> Op[int]:
        """Requeue every entry whose ``queue`` is ``queue``."""
        return self.requeue_where(lambda item: item.get("queue") == queue)

    def requeue_matching(self, wanted: Optional[Callable[[dict[str, Any]], bool]],
                         batch_size: int, progress: Optional[Progress]) -> Op[int]:
        """Requeue the entries ``wanted`` accepts (all when ``None``)."""
        return self.requeue_where(wanted or (lambda item: True), batch_size, progress)

    def requeue_where(self, wanted: Callable[[dict[str, Any]], bool], chunk: int = CHUNK,
                      progress: Optional[Progress] = None) -> Op[int]:
        """Requeue the entries ``wanted`` accepts, ``chunk`` per script call; returns how
        many."""
        if chunk < 1:
            raise ValueError("batch_size must be at least 1")
        # Only the entries present now: a requeued job that fails again is appended behind
        # this snapshot and is not requeued a second time in the same call.
        requeued = 0
        total = yield from self.count()
        start = 0
        while start < total:
            raws = yield from call("LRANGE", self.keys.failed, start,
                                   min(total, start + chunk) - 1)
            if not raws:
                break
            keys = [self.keys.failed, self.keys.queues]
            key_position: dict[str, int] = {}
            args: list[Union[int, str, Raw]] = []
            for offset, raw in enumerate(raws):
                item = decode_entry(raw)
                if item is None or not wanted(item):
                    continue
                try:
                    plan = _RequeuePlan(item, wire.failed_at())
                except FailedEntryError:
                    continue
                position = key_position.get(plan.queue)
                if position is None:
                    keys.append(self.keys.queue(plan.queue))
                    position = key_position[plan.queue] = len(keys)  # Lua counts from 1
                args += [start + offset, raw, plan.entry, plan.queue, plan.job, position]
            if args:
                requeued += int((yield Batch([ScriptCall(_REQUEUE_MANY_LUA, keys, args)]))[0])
            start += len(raws)
            if progress is not None:
                progress(start, total)
        return requeued

    def remove(self, index: int) -> Op[None]:
        """``LSET failed <index> ""`` and ``LREM failed 1 ""`` in one MULTI."""
        replies = yield Batch([cmd("LSET", self.keys.failed, index, ""),
                               cmd("LREM", self.keys.failed, 1, "")],
                              transaction=True, raise_on_error=False)
        if isinstance(replies[0], redis.ResponseError):
            raise IndexError(f"there is no failure at index {index}")

    def remove_many(self, indexes: Iterable[int]) -> Op[list[tuple[int, Raw]]]:
        """Remove the entries at ``indexes`` in one script; the removed pairs, highest first."""
        wanted = sorted({int(index) for index in indexes}, reverse=True)
        if not wanted:
            return []
        flat = (yield Batch([ScriptCall(_REMOVE_AT_LUA, [self.keys.failed], wanted)]))[0]
        return [(int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]

    def clear(self) -> Op[int]:
        """``LLEN`` and ``DEL failed`` in one MULTI; returns the length."""
        length, _ = yield from send(cmd("LLEN", self.keys.failed), cmd("DEL", self.keys.failed),
                                    transaction=True)
        return int(length)

    def clear_retried(self) -> Op[int]:
        """Remove every retried entry, walking from the tail; returns how many."""
        removed = 0
        end = (yield from self.count()) - 1
        while end >= 0:
            start = max(0, end - CHUNK + 1)
            raws = yield from call("LRANGE", self.keys.failed, start, end)
            args: list[Union[int, Raw]] = []
            for offset, raw in enumerate(raws):
                entry = decode_entry(raw)
                if entry is not None and _is_retried(entry):
                    args += [start + offset, raw]
            if args:
                script = ScriptCall(_REMOVE_MATCHING_LUA, [self.keys.failed], args)
                removed += int((yield Batch([script]))[0])
            end = start - 1
        return removed
