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

What a slot's claims remember from call to call (the sequence, a lost reply, the raw list,
the queue read ahead) is one :class:`~pyresqueworker.worker._claim_state.ClaimState`.
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
from ._claim_large import LargeItems, Read
from ._claim_state import ClaimState
from ._claim_values import NO_FINISH, PAUSED, SUCCESS, ClaimCall, Finish
from ._held import BEING_TAKEN, Claimed, HeldLarge, parse_worker_value, read_raw

__all__ = ["BEING_TAKEN", "CLAIM", "NO_FINISH", "PAUSED", "SUCCESS", "ClaimCall", "Claimed",
           "Claimer", "Finish", "HeldLarge", "parse_worker_value"]

# The sequence key lives a day (see the script); renewing that hourly lets every other call
# use the cheaper KEEPTTL.
_RENEW_SEQ_EVERY = 3600.0
_HELD = 3  # claim reply: a large item heads a queue, for the caller to take and check


_claim = LuaScript(CLAIM_SCRIPT)
_requeue = LuaScript(REQUEUE_SCRIPT)
CLAIM = _claim  # for callers that send prepared calls themselves (pipelined, async)


class Claimer:
    """Claims jobs for one slot (one Resque worker id).

    :meth:`claim` does it over ``conn``. For callers that batch many slots' claims on shared
    connections, :meth:`prepare` builds a call without I/O and :meth:`settle` reads its reply.
    What the slot's claims remember between calls is ``state`` (a :class:`ClaimState`), which
    it shares with ``large``, the :class:`LargeItems` that takes the large items they leave.
    """

    def __init__(self, conn: redis.Redis, keys: Keys, worker_id: str, reply_spin: float = 0.0,
                 give_up: Optional[Callable[[float], bool]] = None) -> None:
        self.conn = conn
        self.keys = keys
        self.worker_id = worker_id
        state = self.state = ClaimState(keys, worker_id)
        self.worker_key, self.raw_key, self.seq_key = (state.worker_key, state.raw_key,
                                                       state.seq_key)
        # (its after_send and give_up: see FastCaller)
        self.caller = FastCaller(conn, spin=reply_spin, give_up=give_up)
        self.large = LargeItems(conn, keys, worker_id, self.caller, state)

    # -- without I/O: for batching callers ------------------------------------------------

    @property
    def needs_resolving(self) -> bool:
        """A call's reply was lost: :meth:`claim` (which resolves it) must run next."""
        return self.state.unanswered is not None

    def prepare(self, queues: Sequence[str], finish: Finish, run_at: str,
                adopted: Optional[bytes] = None) -> ClaimCall:
        """The next claim call (finish the previous job, then take from ``queues``)."""
        state = self.state
        seq = state.next_seq()
        parts = [state.queue_parts(q) for q in queues]
        keys = [self.worker_key, *(p[0] for p in parts)]
        renew = time.monotonic() - state.seq_renewed > _RENEW_SEQ_EVERY
        if renew:
            state.seq_renewed = time.monotonic()
        flags = (finish.mode + ("1" if state.holds_raw else "0") + ("p" if adopted is None else "a")
                 + ("c" if finish.cleanup else "-") + ("e" if renew else "-"))
        args: list[Any] = [flags, run_at, str(seq), self.keys.ns, *(p[1] for p in parts)]
        if finish.cleanup:
            keys.append(finish.cleanup)
        if finish.mode in ("2", "3"):
            args.append(finish.entry)
        if adopted is not None:
            args.append(adopted)
        return ClaimCall(keys, args, tuple(queues), finish.ahead)

    def lost(self, call: ClaimCall) -> None:
        """The reply to ``call`` never came; the next :meth:`claim` finds out what ran."""
        self.state.lost(int(call.args[2]))

    def settle(self, call: ClaimCall, reply: Any) -> Claimed | HeldLarge | str | None:
        """What the reply to ``call`` means for this slot."""
        state = self.state
        state.resolved()
        status = int(reply[0])
        if status == 1:
            claimed = Claimed(call.queues[int(reply[1]) - 1], bytes(reply[2]), bool(int(reply[3])))
            state.holds_raw = not claimed.valid
            return claimed
        if status == _HELD:
            state.holds_raw = True
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
        state = self.state
        if finish.ahead:  # (first: even a lost reply's resolution carries them)
            self.caller.send_ahead(finish.ahead)
        if state.unanswered is not None:
            ran, held = self._resolve_lost_reply()
            if held is not None:
                return held
            if ran:
                finish = NO_FINISH  # the lost call already finished the previous job
        call = self.prepare(queues, finish, run_at)
        ahead = state.read_ahead
        if ahead is None or not queues or queues[0] != ahead:
            return self._claim_by_script(call, run_at)
        if finish == SUCCESS and not state.holds_raw:
            return self._finish_then_read_ahead(call, ahead, run_at)
        return self._claim_reading_ahead(call, ahead, run_at)

    # The routes of a claim, as :meth:`claim` chooses them after the lost-reply step
    # (:meth:`_resolve_lost_reply`). Each takes a large item it is left with (:meth:`_take`).

    def _claim_by_script(self, call: ClaimCall, run_at: str) -> Claimed | str | None:
        """The claim script alone: the common route, unless the last claim took a large item
        of the fetch's first queue (and where the other routes fall back)."""
        try:
            reply = _claim(self.conn, call.keys, call.args, self.caller)
        except REDIS_ERRORS:
            self.lost(call)
            raise
        settled = self.settle(call, reply)
        if isinstance(settled, HeldLarge):
            return self._take(settled.queue, run_at)
        return settled

    def _claim_reading_ahead(self, call: ClaimCall, queue: str, run_at: str
                             ) -> Claimed | str | None:
        """The script with ``WATCH`` and ``LINDEX`` of ``queue``'s head in its round trip:
        after a large item of ``queue``, the fetch's first, unless a plain success (with no
        raw list to delete) is what there is to finish.

        After a large item, the next one of that queue is likely large too: reading it with
        the claim saves Redis a round trip per large job. Sent after the script, so what is
        read is what the script left. On a miss (the claim took a small item or found none)
        the read is dropped and the watch ended; reading ahead stops until the next large item.
        """
        state = self.state
        key = state.queue_parts(queue)[0]
        fast = self.caller
        _claim.load_once(self.conn, fast)
        try:
            replies = fast.many([_claim.evalsha(call.keys, call.args), ("WATCH", key),
                                 ("LINDEX", key, 0)])
        except REDIS_ERRORS:
            self.lost(call)
            raise
        if fast.is_error(replies[0]):  # the script did not run
            self.large.end_watch()
            state.read_ahead = None
            try:
                fast.raise_for(replies[0])
            except redis.exceptions.NoScriptError:
                return self._claim_by_script(call, run_at)  # (it loads the script)
            except REDIS_ERRORS:
                self.lost(call)
                raise
        settled = self.settle(call, replies[0])
        got = replies[2]
        if (isinstance(settled, HeldLarge) and settled.queue == queue
                and not fast.is_error(replies[1])
                and not fast.is_error(got)):
            return self._take(queue, run_at, Read(None if got is None else bytes(got)))
        # Missed. Nothing may be raised from here on: the claim ran and its job is ours.
        state.read_ahead = None
        try:
            fast.raise_for(fast.many([("UNWATCH",)])[0])
        except Exception:
            self.large.end_watch()
        if isinstance(settled, HeldLarge):
            return self._take(settled.queue, run_at)
        return settled

    def _finish_then_read_ahead(self, call: ClaimCall, queue: str, run_at: str
                                ) -> Claimed | str | None:
        """The finish without the script, and the watched read of ``queue``'s next head: in a
        run of large items of ``queue``, the fetch's first, when a plain success is to finish
        (see :meth:`LargeItems.finish_and_read`). Anything but a large head next: the script
        claims, with nothing to finish."""
        read = self.large.finish_and_read(call, queue, run_at)
        if read is not None:
            return self._take(queue, run_at, read)
        return self._claim_by_script(self.prepare(call.queues, NO_FINISH, run_at), run_at)

    def _take(self, queue: str, run_at: str, read: Optional[Read] = None,
              resuming: bool = False) -> Claimed | None:
        """:meth:`take_held` after a claim that ran: if Redis fails it, the next
        :meth:`claim` resolves that call (its finish is not sent again) and resumes the take.

        None when another worker took the item meanwhile: the next claim looks again.
        """
        try:
            return self.large.take(queue, run_at, resuming, read)
        except REDIS_ERRORS:
            self.state.take_failed()
            raise

    def take_held(self, queue: str, run_at: str, resuming: bool = False,
                  read: Optional[Read] = None) -> Claimed | None:
        """Take the large head item of ``queue`` that a claim left for this slot (see
        :meth:`LargeItems.take`): for callers that claim with :meth:`prepare` and
        :meth:`settle`, and get a :class:`HeldLarge`."""
        return self.large.take(queue, run_at, resuming, read)

    def adopt(self, queue: str, item: bytes, finish: Finish, run_at: str) -> Claimed:
        """Write a job popped outside the script (``--fetch blpop``) to the worker key."""
        call = self.prepare([queue], finish, run_at, adopted=item)
        claimed = self._claim_by_script(call, run_at)  # (an adopted item is never held)
        assert isinstance(claimed, Claimed)
        return claimed

    def _resolve_lost_reply(self) -> tuple[bool, Claimed | None]:
        """A claim's first step after a lost reply (or a failed take): did that call run,
        and did it claim a job (which is then ours)?"""
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.get(self.seq_key)
            pipe.get(self.worker_key)
            last, held = pipe.execute()
        state = self.state
        value = b"" if held is None else bytes(held)
        being_taken = value.endswith(BEING_TAKEN)
        ran = state.ran(last)
        # Every read first, then the call is answered: were a read cut, the call stays
        # unanswered, and a retry resolves again rather than send the old finish, whose DEL
        # of the worker key would take the claimed job with it.
        holds_job = ran and bool(value) and not being_taken
        raw = read_raw(self.conn, self.raw_key) if holds_job else None
        state.resolved()
        if being_taken:
            # A large item was being taken (the claim ran, or the take failed): finish that.
            # (A failed take marks the call unanswered again.)
            being = json.loads(value)
            return True, self._take(str(being["queue"]), str(being["run_at"]), resuming=True)
        if not holds_job:
            return ran, None
        state.holds_raw = True
        return True, parse_worker_value(value, raw)

    def blpop(self, queues: Sequence[str], timeout: float) -> tuple[str, bytes] | None:
        """``--fetch blpop``: pop from the first non-empty queue (at-most-once)."""
        keys = [self.state.queue_parts(q)[0] for q in queues]
        reply = command(self.conn, "BLPOP", *keys, timeout)
        if reply is None:
            return None
        popped_key = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return queues[keys.index(popped_key)], bytes(reply[1])

    def requeue(self, queue: str, raw: bytes) -> bool:
        """Put a running job back at the front of its queue if this slot still holds it."""
        keys = [self.worker_key, self.keys.queue(queue), self.raw_key]
        return bool(_requeue(self.conn, keys, [raw]))
