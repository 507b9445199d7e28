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

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import redis

from .redis_errors import REDIS_ERRORS
from .resp import FastCaller, LuaScript, command
from .wire import DecodeError, Keys, dumps, loads

__all__ = [
    "NO_FINISH", "PAUSED", "REDIS_ERRORS", "SUCCESS", "Claimed", "Claimer", "Finish",
    "parse_worker_value", "payload_is_valid",
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

# Fixed KEYS of the claim script; the queues follow from KEYS[14].
#  1 worker key, 2 stat:processed, 3 stat:processed:<id>, 4 failed, 5 stat:failed,
#  6 stat:failed:<id>, 7 pause-all-workers, 8 paused queues, 9 claim sequence, 10 raw payload,
#  11 concurrency caps (class -> max), 12 running capped jobs (worker -> class),
#  13 a key to delete with the completion (the worker key itself when there is none).
# Fixed ARGV; the queue names follow from ARGV[9], then their JSON encodings.
#  1 finish mode, 2 failure entry, 3 run_at, 4 mode: "pop", "adopt" (ARGV 5 is the item) or
#  "checked"/"checked-invalid" (ARGV 5 is the head item, validated by the caller), 5 item,
#  6 sequence, 7 worker id, 8 namespace.
CLAIM_SCRIPT = r"""
-- UTF-8 validity at C speed (no per-byte Lua loop, so a 10 MB payload costs milliseconds):
-- replace every well-formed sequence (no overlongs, no surrogates) with an ASCII letter, so
-- removals cannot join neighbours, then look for any byte still >= 0x80.
local UTF8_FORMS = {
  '[\194-\223][\128-\191]',
  '\224[\160-\191][\128-\191]', '[\225-\236\238\239][\128-\191][\128-\191]',
  '\237[\128-\159][\128-\191]',
  '\240[\144-\191][\128-\191][\128-\191]', '[\241-\243][\128-\191][\128-\191][\128-\191]',
  '\244[\128-\143][\128-\191][\128-\191]',
}
local function utf8_ok(s)
  if not string.find(s, '[\128-\255]') then return true end
  for _, form in ipairs(UTF8_FORMS) do s = string.gsub(s, form, 'a') end
  return not string.find(s, '[\128-\255]')
end

local NK, NA = 13, 8
local BIG, MAX = 4096, 1048576  -- see the 'checked' mode below
local wkey, rawkey, wid, ns = KEYS[1], KEYS[10], ARGV[7], ARGV[8]
local finish = ARGV[1]
-- Remember which call ran last, so a caller whose reply was lost can tell what happened
-- (for a day: a worker killed and then pruned by Ruby, which knows nothing of this key,
-- must not leave it behind for ever).
redis.call('SET', KEYS[9], ARGV[6], 'EX', 86400)
local has_caps = redis.call('EXISTS', KEYS[11]) == 1
if finish ~= '0' and redis.call('EXISTS', wkey) == 1 then
  redis.call('DEL', wkey, rawkey)
  -- (Without caps no entry is written; one left from before caps were dropped is removed
  -- the first time this slot finishes a job once caps exist again.)
  if has_caps then redis.call('HDEL', KEYS[12], wid) end
  if KEYS[13] ~= wkey then redis.call('DEL', KEYS[13]) end
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

local n = #KEYS - NK
if n == 0 then return {0} end

-- The class a queued item runs as: ActiveJob's job_class inside its wrapper, else "class".
-- Read from the head of the item only, so a huge payload costs nothing extra.
local function class_of(item)
  local head = string.sub(item, 1, 1024)
  local cls = string.match(head, '^%s*{%s*"class"%s*:%s*"([^"\\]+)"')
  if cls == 'ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper' then
    cls = string.match(head, '"job_class"%s*:%s*"([^"\\]+)"') or cls
  end
  return cls
end

-- Per-class concurrency caps (max_concurrency=): count the capped jobs running now, dropping
-- entries whose worker key is gone (a recovered or pruned worker), then skip over queued
-- items of a class at its cap so they stay where they are.
local caps, running = nil, nil
if has_caps then
  caps, running = {}, {}
  local flat = redis.call('HGETALL', KEYS[11])
  for i = 1, #flat, 2 do caps[flat[i]] = tonumber(flat[i + 1]) end
  flat = redis.call('HGETALL', KEYS[12])
  for i = 1, #flat, 2 do
    if redis.call('EXISTS', ns .. 'worker:' .. flat[i]) == 1 then
      running[flat[i + 1]] = (running[flat[i + 1]] or 0) + 1
    else
      redis.call('HDEL', KEYS[12], flat[i])
    end
  end
end
local function allowed(cls)
  local cap = cls and caps[cls]
  return not cap or (running[cls] or 0) < cap
end
local SCAN = 16  -- how deep a queue is searched past capped jobs
local function take(key)
  if not caps then return redis.call('LPOP', key) end
  local items = redis.call('LRANGE', key, 0, SCAN - 1)
  for j, candidate in ipairs(items) do
    if allowed(class_of(candidate)) then
      if j == 1 then return redis.call('LPOP', key) end
      local tombstone = 'pyresque-tombstone:' .. wid .. ':' .. ARGV[6]
      redis.call('LSET', key, j - 1, tombstone)
      redis.call('LREM', key, 1, tombstone)
      return candidate
    end
  end
  return nil
end

local item, qi
local mode = ARGV[4]
local checked = mode == 'checked' or mode == 'checked-invalid'
if mode == 'adopt' then
  item, qi = ARGV[5], 1
else
  local pause = redis.call('GET', KEYS[7])
  if pause and string.match(string.lower(pause), '^%s*(.-)%s*$') == 'true' then
    return {-1}
  end
  local check_paused = redis.call('SCARD', KEYS[8]) > 0
  if checked then
    -- The caller validated the head of this queue (a large payload, see below): take it only
    -- if it is still the head. Both strings are interned by Lua, so == costs nothing.
    if (check_paused and redis.call('SISMEMBER', KEYS[8], ARGV[NA + 1]) == 1)
        or redis.call('LINDEX', KEYS[NK + 1], 0) ~= ARGV[5] then
      return {-2}
    end
    item, qi = redis.call('LPOP', KEYS[NK + 1]), 1
  else
    for i = 1, n do
      if not (check_paused and redis.call('SISMEMBER', KEYS[8], ARGV[NA + i]) == 1) then
        item = take(KEYS[NK + i])
        if item then qi = i; break end
      end
    end
    if not item then return {0} end
    -- Checking a large payload here would hold Redis for milliseconds per megabyte (Lua
    -- walks it byte by byte): give it back to the head and let the caller check it, then
    -- take it with mode 'checked'. (With caps the item may not have been the head.)
    if not caps and #item > BIG and #item <= MAX then
      redis.call('LPUSH', KEYS[NK + qi], item)
      return {2, qi}
    end
  end
end

if caps then
  local cls = class_of(item)
  if cls and caps[cls] then redis.call('HSET', KEYS[12], wid, cls) end
end

-- enqueue_unique: the job's uniqueness lock is released once a worker starts it. The key is
-- the payload's last field, so only the item's tail is read.
local unique = string.match(string.sub(item, -80), '"unique_key":"(%x+)"}%s*$')
if unique then redis.call('DEL', ns .. 'pyresque:unique:' .. unique) end

-- A worker key must stay valid JSON for Ruby (prune and resque-web decode it): a payload that
-- is not a UTF-8 JSON object is kept byte for byte in this slot's raw key instead, and the
-- worker key says what it is. Payloads over 1 MB are not checked here (that would hold Redis
-- for milliseconds per megabyte): they too go to the raw key, and Python checks them.
local valid
if checked then
  valid = mode == 'checked'
else
  valid = #item <= MAX and (string.find(item, '^%s*{') ~= nil) and utf8_ok(item)
    and pcall(cjson.decode, item)
end
local payload = item
if not valid then
  redis.call('SET', rawkey, item)
  if #item > MAX then
    payload = '"payload of ' .. #item .. ' bytes (not shown)"'
  else
    payload = '"invalid payload (' .. #item .. ' bytes)"'
  end
end
redis.call('SET', wkey,
  '{"queue":' .. ARGV[NA + n + qi] .. ',"run_at":"' .. ARGV[3] .. '","payload":' .. payload .. '}')
return {1, qi, item, valid and 1 or 0}
"""

# Gives a running job back to the front of its queue, if this slot still holds it.
REQUEUE_SCRIPT = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

PAUSED = "paused"
_CHECK_IT = 2  # claim reply: a large item at the head, for the caller to check first
_HEAD_MOVED = -2  # 'checked' claim reply: that item is no longer the head
_CHECK_TRIES = 3


def payload_is_valid(item: bytes) -> bool:
    """What the claim script checks before it shows a payload in a worker key: a UTF-8 JSON
    object that Ruby can decode (here with Python's C decoders, for large payloads)."""
    if item.lstrip()[:1] != b"{":
        return False
    try:
        return isinstance(loads(item.decode("utf-8")), dict)
    except (UnicodeDecodeError, DecodeError, RecursionError):
        return False


@dataclass(frozen=True)
class Claimed:
    """A job the claim script moved into this slot's worker key.

    ``valid`` means Redis checked the payload and shows it in the worker key; otherwise it is
    in the slot's raw key (not a UTF-8 JSON object, or over 1 MB) and Python decides.
    """

    queue: str
    raw: bytes
    valid: bool


def parse_worker_value(value: bytes, raw: Optional[bytes] = None) -> Claimed | None:
    """The job held in a ``worker:<id>`` value written by the claim script (or by Ruby).

    A payload that was not a UTF-8 JSON object is kept in the slot's raw key: pass its
    bytes as ``raw``.
    """
    try:
        held = json.loads(value)
        queue = str(held["queue"])
        payload = held["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(payload, str):
        return Claimed(queue, raw if raw is not None else payload.encode(), False)
    marker = value.find(b',"payload":')
    if marker < 0:
        return Claimed(queue, dumps(payload).encode(), True)
    return Claimed(queue, value[marker + len(b',"payload":') : -1], True)


_claim = LuaScript(CLAIM_SCRIPT)
_requeue = LuaScript(REQUEUE_SCRIPT)


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
            keys.raw_payload(worker_id),
            keys.concurrency_caps,
            keys.running_capped,
        ]
        self._fixed_args = [worker_id, keys.ns]
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
        keys = [*self._fixed_keys, finish.cleanup or self.worker_key, *(p[0] for p in parts)]
        args = [finish.mode, finish.entry, run_at, "pop", "", *self._next_seq(),
                *self._fixed_args, *queues, *(p[1] for p in parts)]
        reply = self._call(keys, args)
        for _ in range(_CHECK_TRIES):
            if int(reply[0]) != _CHECK_IT:
                break
            # The finish went through; the large head item is ours to check, then take.
            checked = self._claim_checked(queues[int(reply[1]) - 1], run_at)
            if checked is not None:
                return checked
            # Another worker took that item first: look at the queues again.
            args = [NO_FINISH.mode, "", run_at, "pop", "", *self._next_seq(),
                    *self._fixed_args, *queues, *(p[1] for p in parts)]
            keys[12] = self.worker_key  # no cleanup key: the finish is done
            reply = self._call(keys, args)
        return self._reply(reply, queues) if int(reply[0]) != _CHECK_IT else None

    def _claim_checked(self, queue: str, run_at: str) -> Claimed | str | None:
        """Take the large item at the head of ``queue`` after checking it here; None if it
        is no longer the head.

        Redis would spend milliseconds per megabyte checking it in Lua, holding every other
        client; here ``bytes.decode`` and the JSON parser do it in C, off Redis. The claim
        then takes the item only if it is still the head.
        """
        key, name_json = self._queue_parts(queue)
        item = command(self.conn, "LINDEX", key, 0)
        if item is None:
            return None
        item = bytes(item)
        mode = "checked" if payload_is_valid(item) else "checked-invalid"
        keys = [*self._fixed_keys, self.worker_key, key]
        args = ["0", "", run_at, mode, item, *self._next_seq(), *self._fixed_args, queue,
                name_json]
        reply = self._call(keys, args)
        return None if int(reply[0]) == _HEAD_MOVED else self._reply(reply, [queue])

    def adopt(self, queue: str, item: bytes, finish: Finish, run_at: str) -> Claimed:
        """Write a job popped outside the script (``--fetch blpop``) to the worker key."""
        key, name_json = self._queue_parts(queue)
        keys = [*self._fixed_keys, finish.cleanup or self.worker_key, key]
        args = [finish.mode, finish.entry, run_at, "adopt", item, *self._next_seq(),
                *self._fixed_args, queue, name_json]
        claimed = self._reply(self._call(keys, args), [queue])
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
            pipe.get(self._fixed_keys[9])
            last, held, raw = pipe.execute()
        ran = last is not None and int(last) == self._unanswered
        self._unanswered = None
        if not ran or held is None:
            return ran, None
        return True, parse_worker_value(bytes(held), raw)

    @staticmethod
    def _reply(reply: Any, queues: Sequence[str]) -> Claimed | str | None:
        status = int(reply[0])
        if status == 1:
            return Claimed(queues[int(reply[1]) - 1], bytes(reply[2]), bool(int(reply[3])))
        return PAUSED if status == -1 else None  # 0: nothing; -2: the checked head moved on

    def wait(self, queue: str, timeout: float) -> bool:
        """Block until ``queue`` has an item or ``timeout`` passes; the item stays queued."""
        key = self._queue_parts(queue)[0]
        reply = command(self.conn, "BLMOVE", key, key, "LEFT", "LEFT", timeout)
        return reply is not None

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
        keys = [self.worker_key, self.keys.queue(queue), self._fixed_keys[9]]
        return bool(_requeue(self.conn, keys, [raw]))
