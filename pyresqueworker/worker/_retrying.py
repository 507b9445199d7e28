"""What a worker does with a failed job that has a retry policy (see :mod:`.retry`).

The attempt counter is resque-retry's (spec §19): ``resque-retry:<Class>:<sha1 of args>``,
set to -1 then incremented, so after the first failure it holds 0 and a Ruby resque-retry
worker running the same class would count on from there. A retry goes through
resque-scheduler's delayed queue (or straight to its queue when the delay is 0, as
resque-retry does), in one script with the job's completion, so a crash can neither lose the
job nor leave it both retried and held.

Every step is safe to send again (a reply lost to a cut, redis-py's own resend, the slot's
retry after an outage): the bump remembers the run it counted for (a token in the slot's
``retrying:<id>`` key) and answers a repeat with the same count, and the completing scripts
do nothing once the slot's worker key no longer holds the job.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Optional

import redis

from ..client.delayed import PUSH_OR_SCHEDULE_LUA
from ..jobs.registry import PayloadError, Registry, UnknownJobClass
from ..jobs.retry import Retry, retry_key_suffix
from ..log import logger
from ..protocol import wire
from ..protocol._resp import LuaScript
from ..protocol.job import Job, JobCall
from ._claim_values import NO_FINISH, Finish

__all__ = ["RETRY_KEY_TTL", "Retrier", "new_token", "with_attempts"]

#: How long an attempt counter outlives the retry it waits for (resque-retry's
#: ``expire_retry_key_after``): long enough for any backoff, short enough to clean up.
RETRY_KEY_TTL = 7 * 24 * 3600
# Payload fields a retried job does not carry on: its uniqueness lock was released when it
# started, and "queue" is the delayed item's own field.
_NOT_CARRIED = ("class", "args", "queue", "unique_key")

# How long the slot's record of a bump lives: only a settle still retrying needs it (it is
# deleted with the job's completion); a day, as the claim's sequence key, if the worker dies.
_MARK_TTL = 86400

# KEYS: 1 the attempt counter, 2 the slot's record of its last bump ("<token>:<count>"),
# 3 the slot's worker key. ARGV: 1 token of this run of the job, 2 the counter's TTL, 3 the
# record's TTL. A repeat with the same token (its first reply was lost) gets the count it
# already made; so does one whose job is no longer held (the retry or give-up of an earlier
# send ran, and deleted the record with the job: counting again would spend an attempt).
_BUMP = LuaScript(r"""
local mark = redis.call('GET', KEYS[2])
if mark then
  local token, n = string.match(mark, '^(%w+):(%-?%d+)$')
  if token == ARGV[1] then return tonumber(n) end
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  return tonumber(redis.call('GET', KEYS[1]) or -1)
end
redis.call('SETNX', KEYS[1], -1)
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. n, 'EX', ARGV[3])
return n
""")

# The completion both endings share, as the claim's finish of a failure writes it (the worker
# key, the raw list, the capped-job entry, the four counts) plus the bump's record; false,
# touching nothing else, when this slot no longer holds the job (an earlier send did it).
# KEYS: 1 worker key, 2 raw payload, 3 running capped jobs, 4 stat:processed,
#  5 stat:processed:<id>, 6 stat:failed, 7 stat:failed:<id>, 8 the bump's record. ARGV: 1 worker id
_COMPLETE_LUA = r"""
local function complete()
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[8])
    return false
  end
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[8])
  redis.call('HDEL', KEYS[3], ARGV[1])
  for i = 4, 7 do redis.call('INCRBY', KEYS[i], 1) end
  return true
end
"""

# KEYS: 1-8 as complete(), 9 failure-<retry key>, 10 delayed_queue_schedule, 11 delayed:<ts>,
#  12 timestamps:<item>, 13 queues, 14 queue:<q>
# ARGV: 1 worker id, 2 item, 3 timestamp ("0": push now), 4 failure JSON, 5 its TTL,
#  6 "delayed:<ts>", 7 queue name
_RETRY_SCRIPT = LuaScript(PUSH_OR_SCHEDULE_LUA + _COMPLETE_LUA + r"""
if not complete() then return 0 end
redis.call('SETEX', KEYS[9], ARGV[5], ARGV[4])
push_or_schedule(ARGV[3], ARGV[2], KEYS[13], KEYS[14], ARGV[7], KEYS[10], KEYS[11], KEYS[12],
                 ARGV[6])
return 1
""")

# Out of attempts. KEYS: 1-8 as complete(), 9 failed, 10 the attempt counter.
# ARGV: 1 worker id, 2 the failure entry (with its attempts)
_GIVE_UP_SCRIPT = LuaScript(_COMPLETE_LUA + r"""
if not complete() then return 0 end
redis.call('RPUSH', KEYS[9], ARGV[2])
redis.call('DEL', KEYS[10])
return 1
""")


def new_token() -> str:
    """A token for one run of a job's settle (see :meth:`Retrier.settle`)."""
    return secrets.token_hex(8)


def with_attempts(entry: str, attempts: int) -> str:
    """A failure entry with ``"attempts"`` appended (Ruby and resque-web ignore the field)."""
    return wire.with_fields(entry, {"attempts": attempts}) if entry.endswith("}") else entry


class Retrier:
    """Retry decisions and writes for one slot."""

    def __init__(self, conn: redis.Redis, keys: wire.Keys, registry: Registry,
                 worker_id: str) -> None:
        self.conn = conn
        self.keys = keys
        self.registry = registry
        self.worker_id = worker_id

    # -- policy ---------------------------------------------------------------------------

    def policy(self, job: Job, call: Optional[JobCall] = None) -> Optional[Retry]:
        """The job's retry policy: the payload's ``"retry"`` override, else its handler's."""
        if call is None:
            try:
                call = self.registry.decode(job)
            except (PayloadError, UnknownJobClass):
                return None
        try:
            handler = self.registry.handler(call.class_name)
        except UnknownJobClass:
            return None
        base = handler.retry
        override = job.payload.get("retry") if isinstance(job.payload, dict) else None
        if override is None:
            return base
        try:
            return Retry.from_json(override, fatal=base.fatal if base else ())
        except ValueError as exc:
            logger.warning("ignoring a malformed retry override", extra={
                "class": call.class_name, "error": str(exc)})
            return base

    def may_retry(self, job: Job, call: Optional[JobCall], exc: BaseException) -> bool:
        """Whether a failure with ``exc`` could be retried (a policy, and not fatal)."""
        if call is None or isinstance(exc, (PayloadError, UnknownJobClass)):
            return False
        policy = self.policy(job, call)
        return policy is not None and policy.retries(exc)

    def counter_key(self, job: Job) -> Optional[str]:
        """The job's attempt counter key (resque-retry's), or None for a non-object payload."""
        payload = job.payload
        if not isinstance(payload, dict):
            return None
        return self.keys.ns + retry_key_suffix(str(payload.get("class")),
                                               payload.get("args") or [])

    # -- after a failure ------------------------------------------------------------------

    def settle(self, job: Job, failure: Finish, now: Optional[float] = None,
               token: Optional[str] = None) -> Optional[Finish]:
        """Retry a failed job if its policy allows; returns the completion still to send.

        ``None`` when the retry was scheduled; :data:`NO_FINISH` when the job was out of
        attempts and has been failed here, with its attempt count, its counter removed (both
        complete the job). Without a policy, ``failure``. Sending it again with the same
        ``token`` after a Redis error counts the attempt once and completes the job once.
        """
        policy = self.policy(job)
        key = self.counter_key(job)
        if policy is None or key is None:
            return failure
        mark = self.keys.own("retrying:" + self.worker_id)
        attempt = int(_BUMP(self.conn, [key, mark, self.keys.worker(self.worker_id)],
                            # (0 after the first failure)
                            [token or new_token(), RETRY_KEY_TTL, _MARK_TTL]))
        if attempt >= policy.max:
            self._give_up(failure, key, mark, attempt + 1)
            logger.warning("job out of retries", extra={
                "class": job.class_name, "attempts": attempt + 1, "worker": self.worker_id})
            return NO_FINISH
        delay = policy.delay(attempt + 1)
        self._schedule(job, failure, key, mark, delay, time.time() if now is None else now)
        if logger.isEnabledFor(logging.INFO):
            logger.info("job failed, retry scheduled", extra={
                "class": job.class_name, "retry": attempt + 1, "of": policy.max,
                "delay_s": round(delay, 3), "worker": self.worker_id})
        return None

    def _completion_keys(self, mark: str) -> list[str]:
        keys, wid = self.keys, self.worker_id
        return [keys.worker(wid), keys.raw_payload(wid), keys.running_capped,
                keys.stat("processed"), keys.stat("processed", wid),
                keys.stat("failed"), keys.stat("failed", wid), mark]

    def _give_up(self, failure: Finish, key: str, mark: str, attempts: int) -> None:
        _GIVE_UP_SCRIPT(self.conn, [*self._completion_keys(mark), self.keys.failed, key],
                        [self.worker_id, with_attempts(failure.entry, attempts)])

    def _schedule(self, job: Job, failure: Finish, key: str, mark: str, delay: float,
                  now: float) -> None:
        payload = job.payload
        assert isinstance(payload, dict)
        class_name, args, queue = str(payload["class"]), payload.get("args") or [], job.queue
        extras = {k: v for k, v in payload.items() if k not in _NOT_CARRIED}
        due = int(now + delay)
        immediate = delay <= 0 or due <= int(now)
        if immediate:  # resque-retry: no delay means Resque.enqueue_to, not the scheduler
            item = wire.with_fields(wire.encode_job(class_name, args), extras)
            timestamp = 0
        else:
            item = wire.with_fields(wire.encode_delayed_item(class_name, args, queue), extras)
            timestamp = due
        keys = self.keys
        _RETRY_SCRIPT(self.conn, [
            *self._completion_keys(mark), keys.ns + "failure-" + key[len(keys.ns):],
            keys.delayed_schedule, keys.delayed(timestamp), keys.timestamps(item),
            keys.queues, keys.queue(queue),
        ], [self.worker_id, item, timestamp, _retry_failure_entry(failure.entry, now),
            max(60, int(2 * delay)), keys.delayed_member(timestamp), queue])


def _retry_failure_entry(entry: str, now: float) -> str:
    """resque-retry's ``failure-<key>`` value: the failure with its own ``failed_at`` format."""
    try:
        data = wire.loads(entry)
    except wire.DecodeError:
        return entry
    if isinstance(data, dict):
        data["failed_at"] = wire.resque_retry_failed_at(now)
        return wire.dumps(data)
    return entry

