"""Taking jobs: one atomic Lua call per job that also completes the previous one.

The claim script walks the queues in the order chosen for this fetch, pops the first job it
finds and writes it to this slot's ``worker:<id>`` key in the same atomic step, so a popped
job is never only in Python's memory: after a ``kill -9`` it is in its queue or in the worker
key, where recovery finds it. The same call first finishes the slot's previous job (``DEL``
the worker key, bump the stats, and push the failure entry if it failed), so a busy slot makes
one round trip per job.

A large payload never enters Lua (that would hold Redis for milliseconds per megabyte): the
script only says the head is large, and the worker reads, checks and takes it (see
:mod:`pyresqueworker.worker._claim_large`); after one, the next claim reads that queue's head
with it, and while large items keep coming it finishes the previous job without the script.

Waiting when every queue is empty is :mod:`pyresqueworker.worker._doorbell`'s business.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import redis

from ..protocol._claim_script import CLAIM_SCRIPT, REQUEUE_SCRIPT
from ..protocol._resp import FastCaller, LuaScript, command
from ..protocol.redis_errors import REDIS_ERRORS
from ..protocol.wire import Keys
from ._claim_large import LARGE, LargeItemTaker, Read, worker_head
from ._claim_values import NO_FINISH, PAUSED, SUCCESS, ClaimCall, Finish
from ._held import BEING_CHECKED, BEING_TAKEN, Claimed, HeldLarge, parse_worker_value, read_raw

__all__ = ["BEING_TAKEN", "CLAIM", "NO_FINISH", "PAUSED", "SUCCESS", "ClaimCall", "Claimed",
           "Claimer", "Finish", "HeldLarge", "parse_worker_value"]

# The sequence key lives a day (see the script); renewing that hourly lets every other call
# use the cheaper KEEPTTL.
_RENEW_SEQ_EVERY = 3600.0
_SEQ_TTL = 86400  # seconds: the claim script's own expiry of the sequence key
_HELD = 3  # claim reply: a large item heads a queue, for the caller to take and check


_claim = LuaScript(CLAIM_SCRIPT)
_requeue = LuaScript(REQUEUE_SCRIPT)
CLAIM = _claim  # for callers that send prepared calls themselves (pipelined, async)


class Claimer(LargeItemTaker):
    """Claims jobs for one slot (one Resque worker id).

    :meth:`claim` does it over ``conn``. For callers that batch many slots' claims on shared
    connections, :meth:`prepare` builds a call without I/O and :meth:`settle` reads its reply.
    """

    def __init__(self, conn: redis.Redis, keys: Keys, worker_id: str, reply_spin: float = 0.0,
                 give_up: Optional[Callable[[float], bool]] = None) -> None:
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
        # (its after_send and give_up: see FastCaller)
        self.caller = FastCaller(conn, spin=reply_spin, give_up=give_up)
        self._skip_watching = 0  # large items still to take with LMOVE (see take_held)
        # The queue whose large head the last claim took: the next claim reads that queue's
        # head in the same round trip (see _call_reading_ahead).
        self._reading_ahead: Optional[str] = None
        self._queue_keys: dict[str, str] = {}
        self._queue_json: dict[str, str] = {}

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
        read: Optional[Read] = None
        if ahead is None or not queues or queues[0] != ahead:
            settled = self.settle(call, self._call(call))
        elif finish == SUCCESS and not self._holds_raw:
            settled, read = self._finish_reading_ahead(call, ahead, run_at)
        else:
            settled, read = self._call_reading_ahead(call, ahead)
        if isinstance(settled, HeldLarge):
            # Taken by another worker meanwhile (None): the next claim looks again.
            return self._taking(lambda: self.take_held(settled.queue, run_at, read=read))
        return settled

    def _call_reading_ahead(self, call: ClaimCall, queue: str
                            ) -> tuple[Claimed | HeldLarge | str | None, Optional[Read]]:
        """The claim call with ``WATCH`` and ``LINDEX`` of ``queue``'s head in its round trip.

        After a large item, the next one of that queue is likely large too: reading it with
        the claim saves Redis a round trip per large job. Sent after the script, so what is
        read is what the script left. On a miss (the claim took a small item or found none)
        the read is dropped and the watch ended; reading ahead stops until the next large item.
        """
        key = self._queue_parts(queue)[0]
        fast = self.caller
        _claim.load_once(self.conn, fast)
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
            return settled, Read(None if got is None else bytes(got))
        # Missed. Nothing may be raised from here on: the claim ran and its job is ours.
        self._reading_ahead = None
        try:
            fast.raise_for(fast.many([("UNWATCH",)])[0])
        except Exception:
            self._end_watch()
        return settled, None

    def _finish_reading_ahead(self, call: ClaimCall, queue: str, run_at: str
                              ) -> tuple[Claimed | HeldLarge | str | None, Optional[Read]]:
        """In a run of large items, what the claim script would do, without the script.

        The script costs Redis about 25 µs here (a megabyte's copies have just emptied the
        caches). Its effects for a plain success on the queue read ahead are few: the
        sequence key, the finish, and the worker key saying a large item is being taken. They
        go in one ``MULTI`` (atomic, and resolvable by the sequence key if the reply is lost),
        with the check for pauses and caps and the watched read of the next head in the same
        round trip. A large head is then taken as after the script. Anything else (pauses or
        caps in use, a small head, an empty queue) undoes the placeholder and asks the script,
        which then has nothing to finish.
        """
        key, name_json = self._queue_parts(queue)
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
            self._end_watch()
            self.lost(call)
            raise
        self._unanswered = None
        got = replies[-1]
        if replies[-3] == 0 and got is not None and len(got) > LARGE:
            self._holds_raw = True  # (as after the script's answer: the take may move it)
            return HeldLarge(queue), Read(bytes(got))
        self._reading_ahead = None
        try:
            for reply in fast.many([("UNWATCH",), ("DEL", self.worker_key)]):
                fast.raise_for(reply)
        except REDIS_ERRORS:
            # The finish ran: resolving finds its sequence and the placeholder, and goes on
            # from there rather than finishing the job a second time.
            self._end_watch()
            self.lost(call)
            raise
        again = self.prepare(call.queues, NO_FINISH, run_at)
        return self.settle(again, self._call(again)), None

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
