"""Taking jobs: one atomic Lua call per job that also completes the previous one.

The claim script walks the queues in the order chosen for this fetch, pops the first job it
finds and writes it to this slot's ``worker:<id>`` key in the same atomic step, so a popped
job is never only in Python's memory: after a ``kill -9`` it is in its queue or in the worker
key, where recovery finds it. The same call first finishes the slot's previous job (``DEL``
the worker key, bump the stats, and push the failure entry if it failed), so a busy slot makes
one round trip per job.

Waiting when every queue is empty: Lua cannot block, so an idle slot blocks in
``BLMOVE queue:<q> queue:<q> LEFT LEFT`` — a move of the head onto itself, which changes nothing
but returns as soon as the list has an item. It is a doorbell only: the job stays in its queue
and the claim script still takes it atomically, so no extra claim list and nothing to recover.
It watches one queue per wait (the first of the current order, so heavier queues are watched
more often); the other queues are re-checked by a claim call after each wait times out, which
bounds their pick-up latency by the wait timeout (0.1 s with several queues: about 20 commands a
second for an idle slot). Keyspace notifications were rejected: they must be enabled on the
server, are lossy on reconnect, and would still need this polling as a fallback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional

import redis

from .resp import FastCaller
from .wire import Keys, dumps

__all__ = [
    "NO_FINISH", "PAUSED", "REDIS_ERRORS", "Claimed", "Claimer", "Finish", "parse_worker_value",
]

# A finished job's completion, folded into the next claim: (mode, failure entry).
#   "0" nothing to finish, "1" success, "2" failure (entry pushed, failed stats bumped),
#   "3" dirty exit (entry pushed, no stats: Ruby's unregister path bumps neither counter).
Finish = tuple[str, str]
NO_FINISH: Finish = ("0", "")
SUCCESS: Finish = ("1", "")

CLAIM_SCRIPT = r"""
local function utf8_ok(s)
  local i = string.find(s, '[\128-\255]')
  local n = #s
  while i do
    local c = string.byte(s, i)
    local len, lo, hi = 0, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then len = 1
    elseif c >= 0xE0 and c <= 0xEF then
      len = 2
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 3
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else return false end
    if i + len > n then return false end
    local b = string.byte(s, i + 1)
    if b < lo or b > hi then return false end
    for j = i + 2, i + len do
      b = string.byte(s, j)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = string.find(s, '[\128-\255]', i + len + 1)
  end
  return true
end

local function escape_byte(c)
  return string.format('\\u%04x', string.byte(c))
end

local wkey = KEYS[1]
local finish = ARGV[1]
-- Remember which call ran last, so a caller whose reply was lost can tell what happened.
redis.call('SET', KEYS[9], ARGV[6])
if finish ~= '0' and redis.call('EXISTS', wkey) == 1 then
  redis.call('DEL', wkey)
  if finish ~= '1' then
    redis.call('RPUSH', KEYS[4], ARGV[2])
  end
  if finish == '2' then
    redis.call('INCRBY', KEYS[5], 1)
    redis.call('INCRBY', KEYS[6], 1)
  end
  if finish ~= '3' then
    redis.call('INCRBY', KEYS[2], 1)
    redis.call('INCRBY', KEYS[3], 1)
  end
end

local n = #KEYS - 9
if n == 0 then return {0} end

local item, qi
if ARGV[4] == 'adopt' then
  item, qi = ARGV[5], 1
else
  local pause = redis.call('GET', KEYS[7])
  if pause and string.match(string.lower(pause), '^%s*(.-)%s*$') == 'true' then
    return {-1}
  end
  local check_paused = redis.call('SCARD', KEYS[8]) > 0
  for i = 1, n do
    if not (check_paused and redis.call('SISMEMBER', KEYS[8], ARGV[6 + i]) == 1) then
      item = redis.call('LPOP', KEYS[9 + i])
      if item then qi = i; break end
    end
  end
  if not item then return {0} end
end

-- A worker key must stay valid JSON for Ruby (prune and resque-web decode it): a payload that
-- is not a UTF-8 JSON object is stored as a JSON string, byte-escaped so it round-trips.
local valid = (string.find(item, '^%s*{') ~= nil) and utf8_ok(item) and pcall(cjson.decode, item)
local payload = item
if not valid then
  payload = '"' .. string.gsub(item, '[%z\1-\31"\\\127-\255]', escape_byte) .. '"'
end
redis.call('SET', wkey,
  '{"queue":' .. ARGV[6 + n + qi] .. ',"run_at":"' .. ARGV[3] .. '","payload":' .. payload .. '}')
return {1, qi, item, valid and 1 or 0}
"""

# Gives a running job back to the front of its queue, if this slot still holds it.
REQUEUE_SCRIPT = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1])
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

PAUSED = "paused"

# Errors that mean "Redis is away for now": every loop backs off and retries on these.
REDIS_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
)


@dataclass(frozen=True)
class Claimed:
    """A job the claim script moved into this slot's worker key."""

    queue: str
    raw: bytes
    valid: bool


def _command(conn: redis.Redis, *args: Any) -> Any:
    """``execute_command`` (untyped in redis-py) for the few raw commands we send."""
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


def parse_worker_value(value: bytes) -> Claimed | None:
    """The job held in a ``worker:<id>`` value written by the claim script (or by Ruby)."""
    try:
        held = json.loads(value)
        queue = str(held["queue"])
        payload = held["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(payload, str):  # a payload that was not JSON, stored byte-escaped
        try:
            return Claimed(queue, payload.encode("latin-1"), False)
        except UnicodeEncodeError:
            return Claimed(queue, payload.encode("utf-8"), False)
    marker = value.find(b',"payload":')
    if marker < 0:
        return Claimed(queue, dumps(payload).encode(), True)
    return Claimed(queue, value[marker + len(b',"payload":') : -1], True)


class _Script:
    """EVALSHA with a reload when the server lost its script cache (restart, SCRIPT FLUSH)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(
        self,
        conn: redis.Redis,
        keys: Sequence[str],
        args: Sequence[Any],
        call: Optional[Callable[..., Any]] = None,
    ) -> Any:
        send = call or partial(_command, conn)
        try:
            return send("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            conn.script_load(self.source)
            return send("EVALSHA", self.sha, len(keys), *keys, *args)


_claim = _Script(CLAIM_SCRIPT)
_requeue = _Script(REQUEUE_SCRIPT)


class Claimer:
    """Claims jobs for one slot (one Resque worker id) over that slot's own connection."""

    def __init__(self, conn: redis.Redis, keys: Keys, worker_id: str) -> None:
        self.conn = conn
        self.keys = keys
        self.worker_id = worker_id
        self.worker_key = keys.worker(worker_id)
        self._fixed_keys = [
            self.worker_key,
            keys.stat("processed"),
            keys.stat("processed", worker_id),
            keys.failed,
            keys.stat("failed"),
            keys.stat("failed", worker_id),
            keys.pause_all,
            keys.paused_queues,
            keys.claim_seq(worker_id),
        ]
        self._seq = 0
        # The sequence number of a call whose reply never came (connection lost mid-call).
        self._unanswered: Optional[int] = None
        self._fast = FastCaller(conn)
        self._queue_keys: dict[str, str] = {}
        self._queue_json: dict[str, str] = {}

    def _queue_parts(self, queue: str) -> tuple[str, str]:
        key = self._queue_keys.get(queue)
        if key is None:
            key = self._queue_keys[queue] = self.keys.queue(queue)
            self._queue_json[queue] = dumps(queue)
        return key, self._queue_json[queue]

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
        parts = [self._queue_parts(q) for q in queues]
        keys = self._fixed_keys + [p[0] for p in parts]
        args = [finish[0], finish[1], run_at, "pop", "", *self._next_seq(), *queues,
                *(p[1] for p in parts)]
        return self._reply(self._call(keys, args), queues)

    def adopt(self, queue: str, item: bytes, finish: Finish, run_at: str) -> Claimed:
        """Write a job popped outside the script (``--fetch blpop``) to the worker key."""
        key, name_json = self._queue_parts(queue)
        args = [finish[0], finish[1], run_at, "adopt", item, *self._next_seq(), queue, name_json]
        claimed = self._reply(self._call([*self._fixed_keys, key], args), [queue])
        assert isinstance(claimed, Claimed)
        return claimed

    def _next_seq(self) -> list[str]:
        self._seq += 1
        return [str(self._seq)]

    def _call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            reply = _claim(self.conn, keys, args, self._fast)
        except REDIS_ERRORS:
            self._unanswered = self._seq
            raise
        self._unanswered = None
        return reply

    def _resolve_unanswered(self) -> tuple[bool, Claimed | None]:
        """Did the unanswered call run, and did it claim a job (which is then ours)?"""
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.get(self._fixed_keys[8])
            pipe.get(self.worker_key)
            last, held = pipe.execute()
        ran = last is not None and int(last) == self._unanswered
        self._unanswered = None
        if not ran or held is None:
            return ran, None
        return True, parse_worker_value(bytes(held))

    @staticmethod
    def _reply(reply: Any, queues: Sequence[str]) -> Claimed | str | None:
        status = int(reply[0])
        if status == 1:
            return Claimed(queues[int(reply[1]) - 1], bytes(reply[2]), bool(int(reply[3])))
        return PAUSED if status == -1 else None

    def wait(self, queue: str, timeout: float) -> bool:
        """Block until ``queue`` has an item or ``timeout`` passes; the item stays queued."""
        key = self._queue_parts(queue)[0]
        reply = _command(self.conn, "BLMOVE", key, key, "LEFT", "LEFT", timeout)
        return reply is not None

    def blpop(self, queues: Sequence[str], timeout: float) -> tuple[str, bytes] | None:
        """``--fetch blpop``: pop from the first non-empty queue (at-most-once)."""
        keys = [self._queue_parts(q)[0] for q in queues]
        reply = _command(self.conn, "BLPOP", *keys, timeout)
        if reply is None:
            return None
        popped_key = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        return queues[keys.index(popped_key)], bytes(reply[1])

    def requeue(self, queue: str, raw: bytes) -> bool:
        """Put a running job back at the front of its queue if this slot still holds it."""
        return bool(_requeue(self.conn, [self.worker_key, self.keys.queue(queue)], [raw]))
