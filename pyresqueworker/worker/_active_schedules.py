"""Which periodic schedules a worker fires: its code-declared ones and the runtime ones in Redis.

:class:`ActiveSchedules` publishes the code-declared schedules (so ``ScheduleStore.list`` shows
them), reads the runtime ones and the disabled set when their change counter moves, and returns
the enabled schedules; :class:`~.periodic.PeriodicEnqueuer` fires their due firings.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import redis

from ..jobs.schedules import Schedule, ScheduleKeys, as_text, decode_hash, is_live

_log = logging.getLogger("pyresqueworker.periodic")

_PUBLISH_EVERY = 60.0  # seconds between re-publications of the code-declared schedules
# Seconds between looks at the schedules' change counter: an idle worker reads the schedules
# themselves only when they changed (a change takes effect within this time).
_CHECK_CHANGES_EVERY = 5.0


class ActiveSchedules:
    """The schedules of ``code`` (this process's registry) and of Redis that are enabled.

    ``queue_for`` gives a runtime schedule without a queue its class's queue, as the registry
    would (``None``: no registry).
    """

    def __init__(self, redis: redis.Redis, keys: ScheduleKeys, code: list[Schedule],
                 queue_for: Optional[Callable[[str], Optional[str]]]) -> None:
        self.redis = redis
        self._k = keys
        self.code: dict[str, Schedule] = {s.name: s for s in code}
        self._queue_for = queue_for
        self._published_at: Optional[float] = None
        self._parsed: dict[str, tuple[bytes, Optional[Schedule]]] = {}  # runtime, by raw bytes
        self._clash_reported: set[str] = set()
        # The schedules read last, the change counter they were read at, and when it was read.
        self._config: Optional[tuple[dict[str, bytes], set[str]]] = None
        self._version: Optional[bytes | str] = None
        self._checked_at = 0.0

    def at(self, now: float) -> list[Schedule]:
        """The enabled schedules at ``now`` (epoch seconds), publishing the code-declared ones
        if that is due."""
        if self.code and (self._published_at is None or not
                          0 <= now - self._published_at < _PUBLISH_EVERY):
            self.publish()
            self._published_at = now
        return self._active(*self._schedules(now))

    def publish(self) -> None:
        """Publish this process's code-declared schedules, so ``ScheduleStore.list`` shows
        them; drop published ones no worker re-published for an hour."""
        now = int(self.redis.time()[0])
        mapping = {name: s.config(seen_at=now) for name, s in self.code.items()}
        with self.redis.pipeline(transaction=False) as pipe:
            if mapping:
                pipe.hset(self._k.code, mapping=mapping)  # type: ignore[arg-type]
            pipe.hgetall(self._k.code)
            published = pipe.execute()[-1]
        stale = [name for name, raw in decode_hash(published).items() if not is_live(raw, now)]
        if stale:
            self.redis.hdel(self._k.code, *stale)

    def _schedules(self, now: float) -> tuple[dict[str, bytes], set[str]]:
        """The runtime schedules and the disabled code ones; re-read only when their change
        counter moved (or vanished: a Redis that lost its data)."""
        if self._config is not None and 0 <= now - self._checked_at < _CHECK_CHANGES_EVERY:
            return self._config
        self._checked_at = now
        version = self.redis.get(self._k.version)
        if self._config is not None and version is not None and version == self._version:
            return self._config
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._k.runtime)
            pipe.smembers(self._k.disabled)
            runtime_raw, disabled_raw = pipe.execute()
        self._config = (decode_hash(runtime_raw), {as_text(m) for m in disabled_raw})
        self._version = version
        return self._config

    def _active(self, runtime: dict[str, bytes], disabled: set[str]) -> list[Schedule]:
        """The enabled schedules: code ones not in the disabled set, then readable runtime
        ones. A runtime schedule named like one of our code ones is skipped: code wins."""
        active = [s for name, s in self.code.items() if name not in disabled]
        for name, raw in runtime.items():
            if name in self.code:
                if name not in self._clash_reported:
                    self._clash_reported.add(name)
                    _log.warning("runtime schedule %r is ignored here: the code declares a "
                                 "schedule of that name", name)
                continue
            cached = self._parsed.get(name)
            if cached is None or cached[0] != raw:
                try:
                    schedule: Optional[Schedule] = Schedule.from_config(
                        name, raw, queue_for=self._queue_for)
                except ValueError as exc:  # logged once per stored value, not every second
                    _log.error("cannot read periodic schedule %r: %s (stored: %s)",
                               name, exc, raw[:200].decode("utf-8", "replace"))
                    schedule = None
                cached = self._parsed[name] = (raw, schedule)
            if cached[1] is not None and cached[1].enabled:
                active.append(cached[1])
        for name in [n for n in self._parsed if n not in runtime]:
            del self._parsed[name]
        return active
