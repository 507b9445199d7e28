"""Large items: read where they are, checked by the worker, and taken in the transaction
that writes the worker key (see :mod:`pyresqueworker.worker._claim`).

A large payload never enters the claim script: the script only says that one heads a queue
(or, in a run of large items, the claim reads the next head with its finish). The slot then
takes it here: ``LINDEX`` under ``WATCH``, a check with Python's C decoders, and ``LTRIM`` in
the ``MULTI`` that writes the worker key, so Redis copies the megabyte once each way. When
other workers take from the same queue it falls back to ``LMOVE`` into the raw list for a
while (a copy more, but nothing to lose to a race).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, NamedTuple, Optional

import redis

from ..protocol._resp import FastCaller, Joined, command
from ..protocol.redis_errors import REDIS_ERRORS
from ..protocol.wire import Keys, dumps
from ._held import Claimed, checked_payload, invalid_note, read_raw

__all__ = ["LARGE", "LargeItemTaker", "Read", "worker_head"]

LARGE = 4096  # bytes: the claim script's own limit (BIG) for items it takes itself
# _take_watching's answer when the queue changed between the read and the take.
_CONTENDED: Final = "contended"
# After a contended take, this many large items are moved with LMOVE before watching again:
# several slots draining one queue of large items would otherwise keep reading each other's.
_SKIP_WATCHING_AFTER_CONTENTION = 16


def worker_head(name_json: str, run_at: str) -> bytes:
    """A worker key's value up to its payload, byte for byte as Ruby writes it."""
    return f'{{"queue":{name_json},"run_at":"{run_at}","payload":'.encode()


class Read(NamedTuple):
    """A queue's head read with the claim, under ``WATCH`` (None: the queue was empty)."""

    item: Optional[bytes]


class LargeItemTaker:
    """The large-item half of :class:`~pyresqueworker.worker._claim.Claimer` (its base)."""

    conn: redis.Redis
    keys: Keys
    worker_key: str
    raw_key: str
    caller: FastCaller
    _seq: int
    _unanswered: Optional[int]
    _holds_raw: bool
    _skip_watching: int
    _reading_ahead: Optional[str]
    _queue_keys: dict[str, str]
    _queue_json: dict[str, str]

    def _queue_parts(self, queue: str) -> tuple[str, str]:
        key = self._queue_keys.get(queue)
        if key is None:
            key = self._queue_keys[queue] = self.keys.queue(queue)
            self._queue_json[queue] = dumps(queue)
        return key, self._queue_json[queue]

    def _end_watch(self) -> None:
        """Drop the connection, and with it any ``WATCH`` (it reconnects on the next call)."""
        if self.caller.connection is not None:
            self.caller.connection.disconnect()

    def _taking(self, take: Callable[[], Claimed | None]) -> Claimed | None:
        """Run a :meth:`take_held`; if Redis fails it, the next :meth:`claim` resumes it."""
        try:
            return take()
        except REDIS_ERRORS:
            # The claim call itself ran (it returned): resolving finds its sequence, so the
            # finish it carried is not sent again, and reads the worker key to go on.
            self._unanswered = self._seq
            raise

    def take_held(self, queue: str, run_at: str, resuming: bool = False,
                  read: Optional[Read] = None) -> Claimed | None:
        """Take the large head item of ``queue`` that the claim left for us, check it here
        (``bytes.decode`` and the JSON parser run in C, off Redis) and show it in the worker
        key if it is a UTF-8 JSON object, byte for byte as Ruby would write it.

        Read where it is and removed in one transaction that fails if the queue changed
        meanwhile (``WATCH``): Redis copies the megabyte once each way. When another client
        changed the queue, or for a while after that, it is moved with ``LMOVE`` into the raw
        list instead (a copy more, but nothing to lose to a race).

        ``resuming``: an earlier attempt may already have moved it. ``read``: the head was
        read with the claim, and the queue is watched since. None when the queue was emptied
        meanwhile (another worker was faster).
        """
        key, name_json = self._queue_parts(queue)
        head = worker_head(name_json, run_at)
        item = read_raw(self.conn, self.raw_key) if resuming else None
        if item is None:
            if read is not None or (self.caller.pipelines and self._skip_watching == 0):
                taken = self._take_watching(queue, key, head, read)
                # Taken: the next claim reads this queue's next head with it.
                self._reading_ahead = queue if isinstance(taken, Claimed) else None
                if taken is None or isinstance(taken, Claimed):
                    return taken
                self._skip_watching = _SKIP_WATCHING_AFTER_CONTENTION
            elif self._skip_watching:
                self._skip_watching -= 1
            moved = command(self.conn, "LMOVE", key, self.raw_key, "LEFT", "RIGHT")
            item = None if moved is None else bytes(moved)
        self._holds_raw = True
        if item is None:
            command(self.conn, "DEL", self.worker_key)
            return None
        payload = checked_payload(item)
        valid = payload is not None
        with self.conn.pipeline(transaction=False) as pipe:
            # In this order: a kill between the two leaves the job in both keys, never none.
            if valid:
                pipe.set(self.worker_key, head + item + b"}")
                pipe.delete(self.raw_key)
            else:
                pipe.set(self.worker_key, head + invalid_note(item))
            pipe.execute()
        self._holds_raw = not valid
        return Claimed(queue, item, valid, payload)

    def _take_watching(self, queue: str, key: str, head: bytes, read: Optional[Read]
                       ) -> Claimed | Literal["contended"] | None:
        """The head of ``key`` read with ``LINDEX`` under ``WATCH`` (unless ``read`` already)
        and taken with ``LTRIM`` in the ``MULTI`` that writes the worker key;
        :data:`_CONTENDED` if the queue changed."""
        fast = self.caller
        try:
            if read is None:
                watched = fast.many([("WATCH", key), ("LINDEX", key, 0)])
                fast.raise_for(watched[0])
                got = fast.raise_for(watched[1])
            else:
                got = read.item
            if got is None:
                for reply in fast.many([("UNWATCH",), ("DEL", self.worker_key)]):
                    fast.raise_for(reply)
                return None
            item = bytes(got)
            payload = checked_payload(item)
            valid = payload is not None
            commands: list[tuple[Any, ...]] = [("MULTI",), ("LTRIM", key, 1, -1)]
            if valid:
                commands.append(("SET", self.worker_key, Joined((head, item, b"}"))))
            else:  # kept byte for byte in the raw list, as the claim script does
                commands += [("DEL", self.raw_key), ("RPUSH", self.raw_key, Joined((item,))),
                             ("SET", self.worker_key, head + invalid_note(item))]
            replies = fast.many([*commands, ("EXEC",)], same_connection=True)
            for reply in replies[:-1]:
                fast.raise_for(reply)  # a refused command (OOM, READONLY) aborts the EXEC
            done = fast.raise_for(replies[-1])
        except redis.exceptions.WatchError:
            return _CONTENDED  # reconnected since the read (a failover): its WATCH is gone
        except Exception:
            self._end_watch()  # whatever went wrong, no WATCH may outlive this call
            raise
        if done is None:
            return _CONTENDED
        for reply in done:
            fast.raise_for(reply)
        self._holds_raw = not valid
        return Claimed(queue, item, valid, payload)
