"""Finding dead workers and recovering the jobs they held (spec §8).

The rules for *who is dead* are Ruby's: a heartbeat older than the prune threshold (strictly
greater, by Redis server time), or a registered worker on this host, with this worker's queue
set (or we watch ``*``), whose pid is not a live Resque process. Workers that never sent a
heartbeat are left alone, as Ruby does, and a heartbeat value nobody can parse is skipped
rather than allowed to crash the prune.

What happens to a dead worker's job is ours to choose: by default it goes back to the front of
its queue (Ruby would fail it with ``Resque::PruneDeadWorkerDirtyExit``, which ``fail`` mode
does). A job recovered too often is a poison pill and becomes a failure instead.

node-resque workers write neither a heartbeat nor a Resque process title, so both rules would
take a live one for dead: a worker whose ``worker:ping:<name>`` is fresh is alive (see
:meth:`Pruner.without_live_node_workers`), and a dead one's job is failed, never requeued.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import redis

from ..log import logger
from ..protocol import wire
from ..protocol._resp import LuaScript
from ..protocol.failure import DECODE_EXCEPTION, PRUNE_DIRTY_EXIT
from ..protocol.redis_errors import raise_if_away
from ..protocol.wire import Keys, WorkerId
from ..protocol.workflow import finish_command, tracking_of
from ._held import BEING_TAKEN, parse_worker_value, read_raw
from ._node_workers import node_held, node_name, node_worker_alive
from ._tracked import failure_json

__all__ = ["RECOVERY_TTL", "Pruner", "resque_pids"]

# Ruby's linux_worker_pids: `ps` lines matching this, minus resque-web.
_RESQUE_PROC = re.compile(r"resque:work|resque:\sStarting|resque-[0-9]")
RECOVERY_TTL = 7 * 24 * 3600  # how long recovery counts are remembered
def resque_pids() -> set[int]:
    """Pids of processes on this host whose command line looks like a Resque worker."""
    pids: set[int] = set()
    if os.path.isdir("/proc"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    command = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if _RESQUE_PROC.search(command) and "resque-web" not in command:
                pids.add(int(entry))
        return pids
    output = subprocess.run(
        ["ps", "-A", "-o", "pid,command"], capture_output=True, text=True, check=False
    ).stdout
    for line in output.splitlines()[1:]:
        pid_text, _, command = line.strip().partition(" ")
        if pid_text.isdigit() and _RESQUE_PROC.search(command) and "resque-web" not in command:
            pids.add(int(pid_text))
    return pids


def _decode_job(raw: bytes) -> Optional[dict[str, Any]]:
    """The payload as a JSON object, or ``None`` where Ruby could not run it either."""
    try:
        payload = wire.loads(raw)
    except wire.DecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


_RELEASE_IF_OURS = LuaScript(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0")


@dataclass
class Pruner:
    """Prunes dead workers on behalf of one live worker process."""

    conn: redis.Redis
    keys: Keys
    me: str
    queue_patterns: tuple[str, ...]
    hostname: str
    prune_after: float
    lock_seconds: int = 60
    on_dead_worker: str = "requeue"
    max_recoveries: int = 3
    own_ids: set[str] = field(default_factory=set)

    def prune(self) -> dict[str, str]:
        """Prune dead workers; returns ``{worker id: what happened}``.

        With Resque's prune lock, both rules apply, as in Ruby. Without it (some worker pruned
        less than a minute ago, which in a fleet is nearly always) the same-host dead-pid rule
        still runs, so a restarted worker recovers its predecessor's job at once: each recovery
        is an atomic transaction, so concurrent pruners cannot both take a job.
        """
        locked = self.conn.set(self.keys.prune_lock, self.me, ex=self.lock_seconds, nx=True)
        try:
            dead = self.dead_workers(expired=bool(locked))
            results = {wid: self.recover(wid, PRUNE_DIRTY_EXIT) for wid in dead}
        finally:
            if locked:
                # Held only while pruning: a worker pruning at every heartbeat would otherwise
                # hold it nearly always, and every Ruby worker's start-up prune would be
                # skipped. Released only if it is still ours (it may have expired and been
                # taken by another worker meanwhile).
                _RELEASE_IF_OURS(self.conn, [self.keys.prune_lock], [self.me])
        for wid, outcome in results.items():
            logger.info("pruned dead worker", extra={"dead_worker": wid, "outcome": outcome})
        return results

    def dead_workers(self, expired: bool = True) -> list[str]:
        """Ids of dead workers, by Ruby's two rules (never this process's own ids).

        ``expired=False`` applies only the same-host rule.
        """
        now = int(self.conn.time()[0])
        dead: list[str] = []
        beats = self.conn.hgetall(self.keys.heartbeats) if expired else {}
        for raw_id, value in beats.items():
            worker_id = _text(raw_id)
            beat = wire.parse_time(value)
            if beat is None:
                logger.debug("unparseable heartbeat skipped", extra={"dead_worker": worker_id})
                continue
            if int(now - beat) > self.prune_after and worker_id not in self.own_ids:
                dead.append(worker_id)
        registered = sorted(_text(w) for w in self.conn.smembers(self.keys.workers))
        live_pids: Optional[set[int]] = None
        for worker_id in registered:
            if worker_id in dead or worker_id in self.own_ids:
                continue
            try:
                parsed = WorkerId.parse(worker_id)
            except ValueError:
                continue
            if "*" not in self.queue_patterns and set(parsed.queues) != set(self.queue_patterns):
                continue
            if parsed.host != self.hostname:
                continue
            if live_pids is None:
                live_pids = resque_pids()
            # Ruby compares the pid string, so a goworker-style "pid-N" id never matches and a
            # Ruby pruner removes it; we read the number, which keeps live multi-slot workers.
            if parsed.pid_number not in live_pids:
                dead.append(worker_id)
        return self.without_live_node_workers(dead, now) if dead else dead

    def without_live_node_workers(self, candidates: list[str], now: float) -> list[str]:
        """``candidates`` less the node-resque workers alive by node-resque's rule."""
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.mget([self.keys.ns + "worker:ping:" + node_name(w) for w in candidates])
            pipe.mget([self.keys.worker_started(w) for w in candidates])
            pings, starts = pipe.execute()
        return [worker_id for worker_id, ping, started in zip(candidates, pings, starts)
                if not node_worker_alive(ping, started, now, self.prune_after)]

    def recover(
        self, worker_id: str, exception: str = PRUNE_DIRTY_EXIT, action: Optional[str] = None
    ) -> str:
        """Give back (or fail) the job ``worker_id`` holds, then unregister it, atomically.

        ``action`` ("requeue" or "fail") overrides ``on_dead_worker`` for this call.

        WATCH on the worker key makes two recoverers safe: only one transaction can win.
        """
        worker_key = self.keys.worker(worker_id)
        with self.conn.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(worker_key)  # type: ignore[no-untyped-call]
                    value = pipe.get(worker_key)
                    value = value.encode() if isinstance(value, str) else value
                    pipe.multi()
                    outcome = "idle"
                    if value:
                        outcome = self._handle_job(pipe, worker_id, value, exception,
                                                   action or self.on_dead_worker)
                    unregister(pipe, self.keys, [worker_id])
                    # A dead node-resque worker's ping, which its scheduler would otherwise
                    # find later and clean again (a failed count with no failure).
                    pipe.delete(self.keys.ns + "worker:ping:" + node_name(worker_id))
                    pipe.execute()
                    return outcome
                except redis.WatchError as exc:
                    raise_if_away(exc)
                    continue

    def _handle_job(
        self, pipe: redis.client.Pipeline, worker_id: str, value: bytes, exception: str,
        action: str,
    ) -> str:
        node = node_held(value)
        if node is not None:
            # Redis's cjson re-encoded this payload (numbers to 14 digits, keys reordered):
            # not the queued bytes, so it is failed for a retry as node-resque does.
            node_queue, node_payload = node
            node_class = node_payload.get("class")
            error = (f"node-resque worker {worker_id} did not gracefully exit while processing "
                     f"{node_class if isinstance(node_class, str) else '<Unknown Job>'}")
            pipe.rpush(self.keys.failed, self._failure(
                worker_id, node_queue, None, node_payload, exception, error))
            return "failed"
        raw = read_raw(self.conn, self.keys.raw_payload(worker_id))
        if raw is None and value.endswith(BEING_TAKEN):
            return "idle"  # killed before it moved the large item it was taking: still queued
        held = parse_worker_value(value, raw)
        # Python decides what is a job (a payload over 1 MB sits unchecked in the raw key).
        payload = _decode_job(held.raw) if held else None
        if held is None or payload is None:
            reason = ("payload is not a UTF-8 JSON object" if held else
                      f"worker key of {worker_id} could not be decoded")
            raw_text = (held.raw if held else value).decode("utf-8", "backslashreplace")
            pipe.rpush(self.keys.failed, self._failure(
                worker_id, held.queue if held else "", None, raw_text, DECODE_EXCEPTION, reason))
            return "failed"
        class_name = payload.get("class")
        class_name = class_name if isinstance(class_name, str) else "<Unknown Job>"
        digest = hashlib.sha1(held.raw).hexdigest()
        recoveries_key = self.keys.own("recoveries")
        seen = int(self.conn.hget(recoveries_key, digest) or 0)
        if action == "requeue" and seen < self.max_recoveries:
            pipe.lpush(self.keys.queue(held.queue), held.raw)
            pipe.hincrby(recoveries_key, digest, 1)
            pipe.expire(recoveries_key, RECOVERY_TTL)
            return "requeued"
        if action == "requeue":
            exception = "pyresqueworker.PoisonPill"
            error = (f"Job {class_name} was recovered from dead workers {seen} times "
                     f"(limit {self.max_recoveries}); treating it as a poison pill")
        else:
            error = f"Worker {worker_id} did not gracefully exit while processing {class_name}"
        pipe.hdel(recoveries_key, digest)
        entry = self._failure(worker_id, held.queue, held.raw.decode("utf-8", "replace"), None,
                              exception, error)
        pipe.rpush(self.keys.failed, entry)
        tracking = tracking_of(payload)
        if tracking is not None:  # its dependents and its batch hear that it failed
            command = finish_command(self.keys.ns, tracking, "failed", failure_json(entry))
            pipe.execute_command(*command.eval_args())  # type: ignore[no-untyped-call]
        return "failed"

    def _failure(self, worker_id: str, queue: str, raw: Optional[str], payload: object,
                 exception: str, error: str) -> str:
        return wire.failure_entry(
            failed_at_text=wire.failed_at(), payload=payload, raw_payload=raw,
            exception=exception, error=error, backtrace=[], worker=worker_id, queue=queue,
        )


def unregister(pipe: redis.client.Pipeline, keys: Keys, worker_ids: Iterable[str]) -> None:
    """Queue Resque's unregister commands (spec §7.2 step 3) on ``pipe``."""
    for worker_id in worker_ids:
        pipe.srem(keys.workers, worker_id)
        pipe.delete(keys.worker(worker_id), keys.worker_started(worker_id))
        pipe.hdel(keys.heartbeats, worker_id)
        pipe.srem(keys.paused_workers, worker_id)
        pipe.delete(keys.stat("processed", worker_id), keys.stat("failed", worker_id),
                    keys.claim_seq(worker_id), keys.raw_payload(worker_id))
