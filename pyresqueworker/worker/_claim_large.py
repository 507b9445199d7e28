"""Large items: read where they are, checked by the worker, and taken in the transaction
that writes the worker key (see :mod:`pyresqueworker.worker._claim`).

A large payload never enters the claim script: the script only says that one heads a queue
(or, in a run of large items, the claim reads the next head with its finish). The slot then
takes it here: ``LINDEX`` under ``WATCH``, a check with Python's C decoders, and ``LTRIM`` in
the ``MULTI`` that writes the worker key, so Redis copies the megabyte once each way. When
other workers take from the same queue it falls back to ``LMOVE`` into the raw list for a
while (a copy more, but nothing to lose to a race). In a run of large items the claim finishes
the previous job here too, without the script (:meth:`LargeItems.finish_and_read`).
"""

from __future__ import annotations

from typing import Any, Final, Literal, NamedTuple, Optional

import redis

from ..protocol._resp import FastCaller, Joined, command
from ..protocol.redis_errors import REDIS_ERRORS
from ..protocol.wire import Keys
from ._claim_state import ClaimState
from ._claim_values import ClaimCall
from ._held import BEING_CHECKED, Claimed, checked_payload, invalid_note, read_raw

__all__ = ["LARGE", "LargeItems", "Read", "worker_head"]

LARGE = 4096  # bytes: the claim script's own limit (BIG) for items it takes itself
_SEQ_TTL = 86400  # seconds: the claim script's own expiry of the sequence key
# _take_watching's answer when the queue changed between the read and the take.
_CONTENDED: Final = "contended"


def worker_head(name_json: str, run_at: str) -> bytes:
    """A worker key's value up to its payload, byte for byte as Ruby writes it."""
    return f'{{"queue":{name_json},"run_at":"{run_at}","payload":'.encode()


class Read(NamedTuple):
    """A queue's head read with the claim, under ``WATCH`` (None: the queue was empty)."""

    item: Optional[bytes]


class LargeItems:
    """Takes the large items a slot's claims leave at the head of a queue (the large-item
    half of :class:`~pyresqueworker.worker._claim.Claimer`, which owns it and ``state``).

    It owns the slot's ``WATCH`` (:meth:`end_watch`); in ``state`` it keeps the raw list's
    fate, the watch-skipping countdown and which queue the next claim reads ahead.
    """

    __slots__ = ("caller", "conn", "keys", "raw_key", "seq_key", "state", "worker_id",
                 "worker_key")

    def __init__(self, conn: redis.Redis, keys: Keys, worker_id: str, caller: FastCaller,
                 state: ClaimState) -> None:
        self.conn, self.keys, self.worker_id = conn, keys, worker_id
        self.worker_key, self.raw_key, self.seq_key = (state.worker_key, state.raw_key,
                                                       state.seq_key)
        self.caller, self.state = caller, state

    def end_watch(self) -> None:
        """Drop the connection, and with it any ``WATCH`` (it reconnects on the next call)."""
        if self.caller.connection is not None:
            self.caller.connection.disconnect()

    def finish_and_read(self, call: ClaimCall, queue: str, run_at: str) -> Optional[Read]:
        """In a run of large items, what the claim script would do, without the script; the
        next head of ``queue`` if it is large (for :meth:`take`), else None (the script is
        to claim, with nothing to finish).

        The script costs Redis about 25 µs here (a megabyte's copies have just emptied the
        caches). Its effects for a plain success on the queue read ahead are few: the
        sequence key, the finish, and the worker key saying a large item is being taken. They
        go in one ``MULTI`` (atomic, and resolvable by the sequence key if the reply is lost),
        with the check for pauses and caps and the watched read of the next head in the same
        round trip. Anything else (pauses or caps in use, a small head, an empty queue) undoes
        the placeholder; reading ahead stops.
        """
        state = self.state
        key, name_json = state.queue_parts(queue)
        args, keys = call.args, self.keys
        expiry = ("EX", _SEQ_TTL) if args[0][4] == "e" else ("KEEPTTL",)
        placeholder = worker_head(name_json, run_at) + BEING_CHECKED
        fast = self.caller
        try:
            replies = fast.many([
                ("MULTI",), ("SET", self.seq_key, args[2], *expiry), ("DEL", self.worker_key),
                ("INCRBY", keys.stat("processed"), 1),
                ("INCRBY", keys.stat("processed", self.worker_id), 1),
                ("SET", self.worker_key, placeholder), ("EXEC",),
                ("EXISTS", keys.concurrency_caps, keys.paused_queues, keys.pause_all),
                ("WATCH", key), ("LINDEX", key, 0)])
            for reply in replies:
                fast.raise_for(reply)  # (a refused command aborts the EXEC: nothing ran)
        except REDIS_ERRORS:
            self.end_watch()
            state.lost(int(args[2]))
            raise
        state.resolved()
        got = replies[-1]
        if replies[-3] == 0 and got is not None and len(got) > LARGE:
            state.holds_raw = True  # (as after the script's answer: the take may move it)
            return Read(bytes(got))
        state.read_ahead = None
        try:
            for reply in fast.many([("UNWATCH",), ("DEL", self.worker_key)]):
                fast.raise_for(reply)
        except REDIS_ERRORS:
            # The finish ran: resolving finds its sequence and the placeholder, and goes on
            # from there rather than finishing the job a second time.
            self.end_watch()
            state.lost(int(args[2]))
            raise
        return None

    def take(self, queue: str, run_at: str, resuming: bool = False,
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
        state = self.state
        key, name_json = state.queue_parts(queue)
        head = worker_head(name_json, run_at)
        item = read_raw(self.conn, self.raw_key) if resuming else None
        if item is None:
            if read is not None or (self.caller.pipelines and state.skip_watching == 0):
                taken = self._take_watching(queue, key, head, read)
                # Taken: the next claim reads this queue's next head with it.
                state.read_ahead = queue if isinstance(taken, Claimed) else None
                if taken is None or isinstance(taken, Claimed):
                    return taken
                state.contended()
            else:
                state.moved_unwatched()
            moved = command(self.conn, "LMOVE", key, self.raw_key, "LEFT", "RIGHT")
            item = None if moved is None else bytes(moved)
        state.holds_raw = True
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
        state.holds_raw = not valid
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
            self.end_watch()  # whatever went wrong, no WATCH may outlive this call
            raise
        if done is None:
            return _CONTENDED
        for reply in done:
            fast.raise_for(reply)
        self.state.holds_raw = not valid
        return Claimed(queue, item, valid, payload)
