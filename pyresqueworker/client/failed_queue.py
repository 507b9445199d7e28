"""The ``failed`` list, read and edited exactly as ``Resque::Failure::Redis`` does (spec §10).

resque-web names a failure by its absolute list index, so this module only ever edits entries
in place (``LSET``) or removes them with Resque's ``LSET ""`` + ``LREM`` sentinel trick; it never
pushes to ``failed`` at all. Where Ruby reads an entry and writes it back in two steps (and can
overwrite a neighbour when another process removes an entry in between), the write here is a
compare-and-set script: it only touches index *i* if *i* still holds the bytes that were read.
The commands are built in :mod:`pyresqueworker.client._failed_ops`, shared with the asyncio client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional

import redis

from ..protocol import wire
from ._commands import run
from ._failed_ops import (
    CHUNK,
    FailedEntryError,
    FailedOps,
    FailedQueueBusyError,
    FailureFilter,
    Progress,
    Raw,
    decode_entry,
    ruby_splat,
)

__all__ = [
    "FailedEntryError",
    "FailedQueue",
    "FailedQueueBusyError",
    "FailureFilter",
    "Progress",
    "Raw",
    "decode_entry",
    "ruby_splat",
]


class FailedQueue:
    """Operations on ``<namespace>failed``: count, read, requeue, remove, clear."""

    def __init__(self, client: redis.Redis, keys: wire.Keys) -> None:
        self.redis = client
        self.keys = keys
        self.ops = FailedOps(keys)

    def count(self) -> int:
        """``LLEN failed`` (what ``Resque::Failure.count`` and ``Resque.info[:failed]`` show)."""
        return run(self.redis, self.ops.count())

    def entries(self, start: int = 0, count: int = 1) -> list[Optional[dict[str, Any]]]:
        """Entries ``start .. start+count-1`` (0 = oldest); ``None`` for undecodable ones."""
        return run(self.redis, self.ops.entries(start, count))

    def requeue(self, index: int, *, if_entry: Optional[Callable[[Raw], bool]] = None) -> str:
        """Resque's "Retry": mark entry ``index`` with ``retried_at`` and enqueue its job again.

        The entry stays in the list. Returns the ``retried_at`` text (what resque-web's XHR
        returns). Raises ``IndexError`` when there is no such entry and
        :class:`FailedEntryError` when it cannot be requeued (nothing is written then).
        ``if_entry`` is asked about the entry's bytes first, and a False answer raises
        :class:`FailedEntryError`; the requeue is then compare-and-set on those same bytes,
        so a caller that checks what it showed acts on exactly that entry.
        """
        return run(self.redis, self.ops.requeue(index, if_entry))

    def requeue_all(self) -> int:
        """Requeue every entry (already retried ones too, as Ruby does); returns how many.

        Entries that cannot be requeued are skipped rather than aborting the walk.
        """
        return run(self.redis, self.ops.requeue_all())

    def requeue_matching(
        self,
        wanted: Optional[Callable[[dict[str, Any]], bool]] = None,
        *,
        batch_size: int = CHUNK,
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
        return run(self.redis, self.ops.requeue_matching(wanted, batch_size, progress))

    def requeue_queue(self, queue: str) -> int:
        """Requeue every entry whose ``queue`` is ``queue``; returns how many."""
        return run(self.redis, self.ops.requeue_queue(queue))

    def remove(self, index: int) -> None:
        """Resque's "Remove": ``LSET failed <index> ""`` then ``LREM failed 1 ""``.

        Sent as one MULTI so no other client sees the blank. Raises ``IndexError`` for an index
        outside the list.
        """
        run(self.redis, self.ops.remove(index))

    def remove_many(self, indexes: Iterable[int]) -> list[tuple[int, Raw]]:
        """Remove the entries now at ``indexes`` in one atomic step; returns the removed
        ``(index, bytes)`` pairs, highest index first.

        Indexes are those of the list before the call (resque-web's ids), so removing several
        never shifts one still to be removed. Indexes with no entry are left out of the result.
        """
        return run(self.redis, self.ops.remove_many(indexes))

    def raw(self, index: int) -> Optional[Raw]:
        """Entry ``index`` exactly as stored (``LINDEX``), ``None`` if there is none."""
        return run(self.redis, self.ops.raw(index))

    def scan(
        self, start: int = 0, stop: Optional[int] = None, *, reverse: bool = False,
        chunk: int = CHUNK,
    ) -> Iterator[tuple[int, Raw]]:
        """``(index, bytes)`` of entries ``start`` .. ``stop - 1`` (``stop=None``: the current
        length), read ``chunk`` at a time; ``reverse`` walks from the newest down."""
        stop = self.count() if stop is None else stop
        start = max(0, start)
        if not reverse:
            while start < stop:
                raws = self.redis.lrange(self.keys.failed, start, min(stop, start + chunk) - 1)
                if not raws:
                    return
                yield from enumerate(raws, start)
                start += len(raws)
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
        return run(self.redis, self.ops.clear())

    def clear_retried(self) -> int:
        """Remove every entry with ``retried_at`` (resque-web "Clear Retried"); returns how many.

        Walks from the tail so that removing entries never shifts an index still to be visited;
        entries pushed meanwhile land behind the walk and are left alone.
        """
        return run(self.redis, self.ops.clear_retried())
