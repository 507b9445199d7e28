"""The ``failed`` list, read and edited exactly as ``Resque::Failure::Redis`` does (spec §10).

resque-web names a failure by its absolute list index, so this module only ever edits entries
in place (``LSET``) or removes them with Resque's ``LSET ""`` + ``LREM`` sentinel trick; it never
pushes to ``failed`` at all. Where Ruby reads an entry and writes it back in two steps (and can
overwrite a neighbour when another process removes an entry in between), the write here is a
compare-and-set script: it only touches index *i* if *i* still holds the bytes that were read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

import redis

from . import wire
from .activejob import job_class

__all__ = [
    "FailedEntryError",
    "FailedQueue",
    "FailedQueueBusyError",
    "FailureFilter",
    "Progress",
]

# What redis-py hands back for a list item (bytes, or str on a decode_responses client).
Raw = Union[bytes, str]

# Entries read per LRANGE when walking the whole list; bounds memory and script argument size.
_CHUNK = 500
# How often ``requeue`` re-reads an entry that changed under it before giving up.
_CAS_ATTEMPTS = 5

#: ``progress(entries examined, entries in the snapshot)``, called after every batch.
Progress = Callable[[int, int], None]

# KEYS: failed, queues, queue:<q>. ARGV: index, bytes read, new entry, queue name, job JSON.
# The entry is rewritten and the job pushed only if the index still holds what was read.
_REQUEUE_LUA = """
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[5])
return 1
"""

# The same for a whole batch, one round trip and one script call for all of it. KEYS: failed,
# queues, then each queue key of the batch. ARGV: groups of six: index, bytes read, new entry,
# queue name, job JSON, position of the queue's key in KEYS. Returns how many were requeued.
_REQUEUE_MANY_LUA = """
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
"""

# KEYS: failed. ARGV: index1, bytes1, index2, bytes2, ... Blank every entry that still holds
# the bytes read, then drop all blanks at once, so no index shifts while the script runs.
# The blank is Ruby's own sentinel (""), which no writer ever stores as a real failure.
_REMOVE_MATCHING_LUA = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('LINDEX', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('LSET', KEYS[1], ARGV[i], '')
    removed = removed + 1
  end
end
if removed > 0 then redis.call('LREM', KEYS[1], 0, '') end
return removed
"""


# KEYS: failed. ARGV: indexes. Blank every entry at those indexes (unless already blank: a
# concurrent Ruby remove is in flight there), then drop all blanks at once; returns the
# removed ``{index, bytes}`` pairs, flattened. One script, so no index shifts in between.
_REMOVE_AT_LUA = """
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
"""


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


class FailedQueue:
    """Operations on ``<namespace>failed``: count, read, requeue, remove, clear."""

    def __init__(self, client: redis.Redis, keys: wire.Keys) -> None:
        self.redis = client
        self.keys = keys
        self._requeue_script = client.register_script(_REQUEUE_LUA)
        self._requeue_many_script = client.register_script(_REQUEUE_MANY_LUA)
        self._remove_script = client.register_script(_REMOVE_MATCHING_LUA)
        self._remove_at_script = client.register_script(_REMOVE_AT_LUA)

    def count(self) -> int:
        """``LLEN failed`` (what ``Resque::Failure.count`` and ``Resque.info[:failed]`` show)."""
        return int(self.redis.llen(self.keys.failed))

    def entries(self, start: int = 0, count: int = 1) -> list[Optional[dict[str, Any]]]:
        """Entries ``start .. start+count-1`` (0 = oldest); ``None`` for undecodable ones."""
        if count <= 0:
            return []
        raws = self.redis.lrange(self.keys.failed, start, start + count - 1)
        return [decode_entry(raw) for raw in raws]

    def requeue(self, index: int, *, if_entry: Optional[Callable[[Raw], bool]] = None) -> str:
        """Resque's "Retry": mark entry ``index`` with ``retried_at`` and enqueue its job again.

        The entry stays in the list. Returns the ``retried_at`` text (what resque-web's XHR
        returns). Raises ``IndexError`` when there is no such entry and
        :class:`FailedEntryError` when it cannot be requeued (nothing is written then).
        ``if_entry`` is asked about the entry's bytes first, and a False answer raises
        :class:`FailedEntryError`; the requeue is then compare-and-set on those same bytes,
        so a caller that checks what it showed acts on exactly that entry.
        """
        for _ in range(_CAS_ATTEMPTS):
            raw = self.redis.lindex(self.keys.failed, index)
            if raw is None:
                raise IndexError(f"there is no failure at index {index}")
            if if_entry is not None and not if_entry(raw):
                raise FailedEntryError(f"the failure at index {index} is not the one expected")
            item = decode_entry(raw)
            if item is None:
                raise FailedEntryError(f"the failure at index {index} is not a JSON object")
            plan = _RequeuePlan(item, wire.failed_at())
            if self._run_requeue(index, raw, plan):
                return plan.retried_at
        raise FailedQueueBusyError(f"the failure at index {index} kept changing; try again")

    def requeue_all(self) -> int:
        """Requeue every entry (already retried ones too, as Ruby does); returns how many.

        Entries that cannot be requeued are skipped rather than aborting the walk.
        """
        return self._requeue_where(lambda item: True)

    def requeue_matching(
        self,
        wanted: Optional[Callable[[dict[str, Any]], bool]] = None,
        *,
        batch_size: int = _CHUNK,
        progress: Optional[Progress] = None,
    ) -> int:
        """Requeue every entry ``wanted`` accepts (all when ``None``; see
        :class:`FailureFilter`); returns how many were requeued.

        The list is walked ``batch_size`` entries at a time: one ``LRANGE`` and one script call
        that requeues the batch (compare-and-set per entry, so Redis is busy for about 3 µs per
        entry at a time), then ``progress(examined, total)``. Only the
        entries present at the start are visited; an entry that changed under the walk
        (removed meanwhile) is left alone, as are entries that cannot be requeued.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        return self._requeue_where(wanted or (lambda item: True), batch_size, progress)

    def requeue_queue(self, queue: str) -> int:
        """Requeue every entry whose ``queue`` is ``queue``; returns how many."""
        return self._requeue_where(lambda item: item.get("queue") == queue)

    def remove(self, index: int) -> None:
        """Resque's "Remove": ``LSET failed <index> ""`` then ``LREM failed 1 ""``.

        Sent as one MULTI so no other client sees the blank. Raises ``IndexError`` for an index
        outside the list.
        """
        pipe = self.redis.pipeline(transaction=True)
        pipe.lset(self.keys.failed, index, "")
        pipe.lrem(self.keys.failed, 1, "")
        results = pipe.execute(raise_on_error=False)
        if isinstance(results[0], redis.ResponseError):
            raise IndexError(f"there is no failure at index {index}")

    def remove_many(self, indexes: Iterable[int]) -> list[tuple[int, Raw]]:
        """Remove the entries now at ``indexes`` in one atomic step; returns the removed
        ``(index, bytes)`` pairs, highest index first.

        Indexes are those of the list before the call (resque-web's ids), so removing several
        never shifts one still to be removed. Indexes with no entry are left out of the result.
        """
        wanted = sorted({int(index) for index in indexes}, reverse=True)
        if not wanted:
            return []
        flat = self._remove_at_script(keys=[self.keys.failed], args=wanted)
        return [(int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]

    def raw(self, index: int) -> Optional[Raw]:
        """Entry ``index`` exactly as stored (``LINDEX``), ``None`` if there is none."""
        value: Optional[Raw] = self.redis.lindex(self.keys.failed, index)
        return value

    def scan(
        self, start: int = 0, stop: Optional[int] = None, *, reverse: bool = False,
        chunk: int = _CHUNK,
    ) -> Iterator[tuple[int, Raw]]:
        """``(index, bytes)`` of entries ``start`` .. ``stop - 1`` (``stop=None``: the current
        length), read ``chunk`` at a time; ``reverse`` walks from the newest down."""
        stop = self.count() if stop is None else stop
        start = max(0, start)
        if not reverse:
            yield from ((i, raw) for first, raws in self._walk(stop, start, chunk)
                        for i, raw in enumerate(raws, first))
            return
        end = stop - 1
        while end >= start:
            first = max(start, end - chunk + 1)
            raws = self.redis.lrange(self.keys.failed, first, end)
            for offset in range(len(raws) - 1, -1, -1):
                yield first + offset, raws[offset]
            end = first - 1

    def clear(self) -> int:
        """``DEL failed``; returns how many entries were dropped."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.llen(self.keys.failed)
        pipe.delete(self.keys.failed)
        length, _ = pipe.execute()
        return int(length)

    def clear_retried(self) -> int:
        """Remove every entry with ``retried_at`` (resque-web "Clear Retried"); returns how many.

        Walks from the tail so that removing entries never shifts an index still to be visited;
        entries pushed meanwhile land behind the walk and are left alone.
        """
        removed = 0
        end = self.count() - 1
        while end >= 0:
            start = max(0, end - _CHUNK + 1)
            raws = self.redis.lrange(self.keys.failed, start, end)
            args: list[Union[int, Raw]] = []
            for offset, raw in enumerate(raws):
                entry = decode_entry(raw)
                if entry is not None and _is_retried(entry):
                    args += [start + offset, raw]
            if args:
                removed += int(self._remove_script(keys=[self.keys.failed], args=args))
            end = start - 1
        return removed

    # ------------------------------------------------------------------------------------

    def _run_requeue(self, index: int, raw: Raw, plan: _RequeuePlan, pipe: Any = None) -> Any:
        keys = [self.keys.failed, self.keys.queues, self.keys.queue(plan.queue)]
        args: list[Union[int, Raw]] = [index, raw, plan.entry, plan.queue, plan.job]
        return self._requeue_script(keys=keys, args=args, client=pipe)

    def _walk(
        self, stop: int, start: int = 0, chunk: int = _CHUNK
    ) -> Iterator[tuple[int, list[Raw]]]:
        """``(first index, raw entries)`` chunks of the list from ``start`` up to index
        ``stop`` (exclusive)."""
        while start < stop:
            raws = self.redis.lrange(self.keys.failed, start, min(stop, start + chunk) - 1)
            if not raws:
                return
            yield start, raws
            start += len(raws)

    def _requeue_where(
        self, wanted: Callable[[dict[str, Any]], bool], chunk: int = _CHUNK,
        progress: Optional[Progress] = None,
    ) -> int:
        # Only the entries present now: a requeued job that fails again is appended behind
        # this snapshot and is not requeued a second time in the same call.
        requeued = 0
        total = self.count()
        for start, raws in self._walk(total, 0, chunk):
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
                pipe = self.redis.pipeline(transaction=False)
                self._requeue_many_script(keys=keys, args=args, client=pipe)
                requeued += int(pipe.execute()[0])
            if progress is not None:
                progress(start + len(raws), total)
        return requeued
