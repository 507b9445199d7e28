"""Taking jobs: one atomic Lua call per job that also completes the previous one.

The claim script walks the queues in the order chosen for this fetch, pops the first job it
finds and writes it to this slot's ``worker:<id>`` key in the same atomic step, so a popped
job is never only in Python's memory: after a ``kill -9`` it is in its queue or in the worker
key, where recovery finds it. The same call first finishes the slot's previous job (``DEL``
the worker key, bump the stats, and push the failure entry if it failed), so a busy slot makes
one round trip per job.

A large payload never enters Lua (that would hold Redis for milliseconds per megabyte): the
script only says the head is large, and the worker reads, checks and takes it (see
:meth:`Claimer.take_held`); after one, the next claim reads that queue's head with it.

Waiting when every queue is empty is :mod:`pyresqueworker.worker._doorbell`'s business.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, Optional

import redis

from ..protocol._claim_script import CLAIM_SCRIPT, REQUEUE_SCRIPT
from ..protocol._resp import FastCaller, Joined, LuaScript, command
from ..protocol.redis_errors import REDIS_ERRORS
from ..protocol.wire import Keys, dumps
from ._held import (
    BEING_TAKEN,
    Claimed,
    HeldLarge,
    checked_payload,
    invalid_note,
    parse_worker_value,
    read_raw,
)

__all__ = [
    "BEING_TAKEN", "CLAIM", "NO_FINISH", "PAUSED", "REDIS_ERRORS", "SUCCESS", "ClaimCall",
    "Claimed", "Claimer", "Finish", "HeldLarge", "checked_payload", "parse_worker_value",
    "read_raw",
]

class Finish(NamedTuple):
    """A finished job's completion, folded into the slot's next claim call.

    ``mode``: "0" nothing to finish, "1" success, "2" failure (entry pushed, failed stats
    bumped), "3" dirty exit (entry pushed, no stats: Ruby's unregister path bumps neither).
    ``cleanup`` names a key deleted in the same step (a retry counter once a job is done with
    retrying).
    """

    mode: str
    entry: str = ""
    cleanup: str = ""


NO_FINISH = Finish("0")
SUCCESS = Finish("1")

PAUSED = "paused"
# The sequence key lives a day (see the script); renewing that hourly lets every other call
# use the cheaper KEEPTTL.
_RENEW_SEQ_EVERY = 3600.0
# _take_watching's answer when the queue changed between the read and the take.
_CONTENDED: Final = "contended"
# After a contended take, this many large items are moved with LMOVE before watching again:
# several slots draining one queue of large items would otherwise keep reading each other's.
_SKIP_WATCHING_AFTER_CONTENTION = 16
_HELD = 3  # claim reply: a large item heads a queue, for the caller to take and check


class _Read(NamedTuple):
    """A queue's head read with the claim, under ``WATCH`` (None: the queue was empty)."""

    item: Optional[bytes]


@dataclass(frozen=True)
class ClaimCall:
    """One prepared claim call: the script's KEYS and ARGV (see :meth:`Claimer.prepare`)."""

    keys: list[str]
    args: list[Any]
    queues: tuple[str, ...]


_claim = LuaScript(CLAIM_SCRIPT)
_requeue = LuaScript(REQUEUE_SCRIPT)
CLAIM = _claim  # for callers that send prepared calls themselves (pipelined, async)


class Claimer:
    """Claims jobs for one slot (one Resque worker id).

    :meth:`claim` does it over ``conn``. For callers that batch many slots' claims on shared
    connections, :meth:`prepare` builds a call without I/O and :meth:`settle` reads its reply.
    """

    def __init__(self, conn: redis.Redis, keys: Keys, worker_id: str, reply_spin: float = 0.0
                 ) -> None:
        self.conn = conn
        self.keys = keys
        self.worker_id = worker_id
        self.worker_key = keys.worker(worker_id)
        self.raw_key = keys.raw_payload(worker_id)
        self.seq_key = keys.claim_seq(worker_id)
        self._seq = 0
        # When the sequence key's expiry was last renewed (monotonic; -inf: not yet).
        self._seq_renewed = float("-inf")
        # The sequence number of a call whose reply never came (connection lost mid-call).
        self._unanswered: Optional[int] = None
        # Whether the raw list may exist (unknown at first: a previous life may have left one).
        self._holds_raw = True
        self.caller = FastCaller(conn, spin=reply_spin)  # (its after_send: see FastCaller)
        self._skip_watching = 0  # large items still to take with LMOVE (see take_held)
        # The queue whose large head the last claim took: the next claim reads that queue's
        # head in the same round trip (see _call_reading_ahead).
        self._reading_ahead: Optional[str] = None
        self._queue_keys: dict[str, str] = {}
        self._queue_json: dict[str, str] = {}

    def _queue_parts(self, queue: str) -> tuple[str, str]:
        key = self._queue_keys.get(queue)
        if key is None:
            key = self._queue_keys[queue] = self.keys.queue(queue)
            self._queue_json[queue] = dumps(queue)
        return key, self._queue_json[queue]

    # -- without I/O: for batching callers ------------------------------------------------

    @property
    def needs_resolving(self) -> bool:
        """A call's reply was lost: :meth:`claim` (which resolves it) must run next."""
        return self._unanswered is not None

    def prepare(self, queues: Sequence[str], finish: Finish, run_at: str,
                adopted: Optional[bytes] = None) -> ClaimCall:
        """The next claim call (finish the previous job, then take from ``queues``)."""
        self._seq += 1
        parts = [self._queue_parts(q) for q in queues]
        keys = [self.worker_key, *(p[0] for p in parts)]
        renew = time.monotonic() - self._seq_renewed > _RENEW_SEQ_EVERY
        if renew:
            self._seq_renewed = time.monotonic()
        flags = (finish.mode + ("1" if self._holds_raw else "0") + ("p" if adopted is None else "a")
                 + ("c" if finish.cleanup else "-") + ("e" if renew else "-"))
        args: list[Any] = [flags, run_at, str(self._seq), self.keys.ns, *(p[1] for p in parts)]
        if finish.cleanup:
            keys.append(finish.cleanup)
        if finish.mode in ("2", "3"):
            args.append(finish.entry)
        if adopted is not None:
            args.append(adopted)
        return ClaimCall(keys, args, tuple(queues))

    def lost(self, call: ClaimCall) -> None:
        """The reply to ``call`` never came; the next :meth:`claim` finds out what ran."""
        self._unanswered = int(call.args[2])
        self._seq_renewed = float("-inf")  # the renewal may not have run: renew next time

    def settle(self, call: ClaimCall, reply: Any) -> Claimed | HeldLarge | str | None:
        """What the reply to ``call`` means for this slot."""
        self._unanswered = None
        status = int(reply[0])
        if status == 1:
            claimed = Claimed(call.queues[int(reply[1]) - 1], bytes(reply[2]), bool(int(reply[3])))
            self._holds_raw = not claimed.valid
            return claimed
        if status == _HELD:
            self._holds_raw = True
            return HeldLarge(call.queues[int(reply[1]) - 1])
        return PAUSED if status == -1 else None

    # -- with I/O over this slot's connection --------------------------------------------

    def claim(
        self, queues: Sequence[str], finish: Finish, run_at: str
    ) -> Claimed | str | None:
        """Finish the previous job, then take the next from ``queues`` (tried in order).

        Returns a :class:`Claimed`, :data:`PAUSED` when ``pause-all-workers`` is set, or
        ``None`` when every queue is empty (or paused). With no queues it only finishes.
        After a call whose reply was lost, the next call first learns whether it ran (and
        what it claimed), so a retry neither finishes a job twice nor claims over one.
        """
        if self._unanswered is not None:
            ran, held = self._resolve_unanswered()
            if held is not None:
                return held
            if ran:
                finish = NO_FINISH  # the lost call already finished the previous job
        call = self.prepare(queues, finish, run_at)
        ahead = self._reading_ahead
        if ahead is None or not queues or queues[0] != ahead:
            settled = self.settle(call, self._call(call))
            read: Optional[_Read] = None
        else:
            settled, read = self._call_reading_ahead(call, ahead)
        if isinstance(settled, HeldLarge):
            # Taken by another worker meanwhile (None): the next claim looks again.
            return self._taking(lambda: self.take_held(settled.queue, run_at, read=read))
        return settled

    def _call_reading_ahead(self, call: ClaimCall, queue: str
                            ) -> tuple[Claimed | HeldLarge | str | None, Optional[_Read]]:
        """The claim call with ``WATCH`` and ``LINDEX`` of ``queue``'s head in its round trip.

        After a large item, the next one of that queue is likely large too: reading it with
        the claim saves Redis a round trip per large job. Sent after the script, so what is
        read is what the script left. On a miss (the claim took a small item or found none)
        the read is dropped and the watch ended; reading ahead stops until the next large item.
        """
        key = self._queue_parts(queue)[0]
        fast = self.caller
        _claim.load_once(self.conn)
        try:
            replies = fast.many([_claim.evalsha(call.keys, call.args), ("WATCH", key),
                                 ("LINDEX", key, 0)])
        except REDIS_ERRORS:
            self.lost(call)
            raise
        if fast.is_error(replies[0]):  # the script did not run
            self._end_watch()
            self._reading_ahead = None
            try:
                fast.raise_for(replies[0])
            except redis.exceptions.NoScriptError:
                return self.settle(call, self._call(call)), None  # (it loads the script)
            except REDIS_ERRORS:
                self.lost(call)
                raise
        settled = self.settle(call, replies[0])
        got = replies[2]
        if (isinstance(settled, HeldLarge) and settled.queue == queue
                and not fast.is_error(replies[1])
                and not fast.is_error(got)):
            return settled, _Read(None if got is None else bytes(got))
        # Missed. Nothing may be raised from here on: the claim ran and its job is ours.
        self._reading_ahead = None
        try:
            fast.raise_for(fast.many([("UNWATCH",)])[0])
        except Exception:
            self._end_watch()
        return settled, None

    def _end_watch(self) -> None:
        """Drop the connection, and with it any ``WATCH`` (it reconnects on the next call)."""
        if self.caller.connection is not None:
            self.caller.connection.disconnect()  # type: ignore[no-untyped-call]

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
                  read: Optional[_Read] = None) -> Claimed | None:
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
        head = f'{{"queue":{name_json},"run_at":"{run_at}","payload":'.encode()
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

    def _take_watching(self, queue: str, key: str, head: bytes, read: Optional[_Read]
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

    def adopt(self, queue: str, item: bytes, finish: Finish, run_at: str) -> Claimed:
        """Write a job popped outside the script (``--fetch blpop``) to the worker key."""
        call = self.prepare([queue], finish, run_at, adopted=item)
        claimed = self.settle(call, self._call(call))
        assert isinstance(claimed, Claimed)
        return claimed

    def _call(self, call: ClaimCall) -> Any:
        try:
            return _claim(self.conn, call.keys, call.args, self.caller)
        except REDIS_ERRORS:
            self.lost(call)
            raise

    def _resolve_unanswered(self) -> tuple[bool, Claimed | None]:
        """Did the unanswered call run, and did it claim a job (which is then ours)?"""
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.get(self.seq_key)
            pipe.get(self.worker_key)
            last, held = pipe.execute()
        ran = last is not None and int(last) == self._unanswered
        self._unanswered = None
        value = None if held is None else bytes(held)
        if value is not None and value.endswith(BEING_TAKEN):
            # A large item was being taken (the claim ran, or take_held failed): finish that.
            being = json.loads(value)
            return True, self._taking(lambda: self.take_held(
                str(being["queue"]), str(being["run_at"]), resuming=True))
        if not ran or value is None:
            return ran, None
        self._holds_raw = True
        return True, parse_worker_value(value, read_raw(self.conn, self.raw_key))

    def blpop(self, queues: Sequence[str], timeout: float) -> tuple[str, bytes] | None:
        """``--fetch blpop``: pop from the first non-empty queue (at-most-once)."""
        keys = [self._queue_parts(q)[0] for q in queues]
        reply = command(self.conn, "BLPOP", *keys, timeout)
        if reply is None:
            return None
        popped_key = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return queues[keys.index(popped_key)], bytes(reply[1])

    def requeue(self, queue: str, raw: bytes) -> bool:
        """Put a running job back at the front of its queue if this slot still holds it."""
        keys = [self.worker_key, self.keys.queue(queue), self.raw_key]
        return bool(_requeue(self.conn, keys, [raw]))
