"""What one slot's claims remember from call to call: :class:`ClaimState`.

Owned by the slot's :class:`~pyresqueworker.worker._claim.Claimer`, which passes it to the
large-item taker (:class:`~pyresqueworker.worker._claim_large.LargeItems`); nothing else
keeps claim state. Plain attributes (read on every claim); the methods name the transitions
that touch more than one of them, or that several places make.
"""

from __future__ import annotations

from typing import Optional

from ..protocol.wire import Keys, dumps

__all__ = ["ClaimState"]

# After a contended take, this many large items are moved with LMOVE before watching again:
# several slots draining one queue of large items would otherwise keep reading each other's.
_SKIP_WATCHING_AFTER_CONTENTION = 16


class ClaimState:
    """One slot's claim state: its keys, and what its claims remember from call to call.

    ``worker_key`` / ``raw_key`` / ``seq_key``: the slot's worker key, raw list and sequence
    key. ``seq``: the last call's sequence number (each call stores its own in the sequence
    key, so a caller whose reply was lost can tell whether it ran). ``seq_renewed``: when the
    sequence key's expiry was last renewed (monotonic; -inf: not yet, or a call that renews
    it may not have run). ``unanswered``: the sequence number of a call whose outcome is
    unknown (its reply was lost, or the take of the large item it left failed); the next
    claim resolves it first. ``holds_raw``: whether the slot's raw list may exist (unknown at
    first: a previous life may have left one), so that a finish deletes it. ``read_ahead``:
    the queue whose large head the last claim took; the next claim from that queue reads its
    next head in the same round trip. ``skip_watching``: large items still to take with
    ``LMOVE`` rather than under ``WATCH`` (a countdown after a contended take).
    """

    # (Slots: an asyncio worker may run 10,000 slots, each with one of these.)
    __slots__ = ("holds_raw", "keys", "queue_json", "queue_keys", "raw_key", "read_ahead",
                 "seq", "seq_key", "seq_renewed", "skip_watching", "unanswered", "worker_key")

    def __init__(self, keys: Keys, worker_id: str) -> None:
        self.keys = keys
        self.worker_key = keys.worker(worker_id)
        self.raw_key = keys.raw_payload(worker_id)
        self.seq_key = keys.claim_seq(worker_id)
        self.seq = 0
        self.seq_renewed = float("-inf")
        self.unanswered: Optional[int] = None
        self.holds_raw = True
        self.read_ahead: Optional[str] = None
        self.skip_watching = 0
        self.queue_keys: dict[str, str] = {}  # each queue's key...
        self.queue_json: dict[str, str] = {}  # ...and its name as JSON (caches)

    def next_seq(self) -> int:
        """The sequence number of a new call."""
        self.seq += 1
        return self.seq

    def lost(self, seq: int) -> None:
        """Call ``seq``'s reply never came: the next claim finds out what ran."""
        self.unanswered = seq
        self.seq_renewed = float("-inf")  # the renewal may not have run: renew next time

    def take_failed(self) -> None:
        """The last call ran (it answered), but taking the large item it left failed: the
        next claim resolves it as a lost reply, finds that it ran (so its finish is not sent
        again) and resumes the take from the worker key."""
        self.unanswered = self.seq

    def ran(self, last: Optional[bytes]) -> bool:
        """Whether the unanswered call ran, the sequence key reading ``last``. It stays
        unanswered until :meth:`resolved`: a resolution cut short is done again in full."""
        return last is not None and int(last) == self.unanswered

    def resolved(self) -> None:
        """What the unanswered call did is known (and, if it claimed a job, held)."""
        self.unanswered = None

    def queue_parts(self, queue: str) -> tuple[str, str]:
        """``queue``'s key and its name as JSON."""
        key = self.queue_keys.get(queue)
        if key is None:
            key = self.queue_keys[queue] = self.keys.queue(queue)
            self.queue_json[queue] = dumps(queue)
        return key, self.queue_json[queue]

    def contended(self) -> None:
        """Another client changed the queue during a watched take: move the next large
        items with ``LMOVE`` for a while."""
        self.skip_watching = _SKIP_WATCHING_AFTER_CONTENTION

    def moved_unwatched(self) -> None:
        """A large item was moved with ``LMOVE``: one fewer before watching again."""
        if self.skip_watching:
            self.skip_watching -= 1
