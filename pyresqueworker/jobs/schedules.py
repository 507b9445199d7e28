"""What a periodic schedule is, and where runtime-managed ones are stored (see worker/periodic.py).

:class:`Schedule` is one validated cron schedule; :class:`ScheduleStore` adds, lists, enables,
disables and deletes runtime schedules in Redis, and lists the code-declared schedules that
running workers publish. Cron strings are standard five-field cron (parsed by croniter),
evaluated in UTC unless they end with a time-zone name, as in rufus-scheduler
(resque-scheduler's cron engine): ``"0 3 * * * Europe/Berlin"``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone, tzinfo
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from croniter import CroniterError, croniter  # type: ignore[import-untyped]

from ..protocol import wire
from ..protocol.redis_errors import raise_if_away

__all__ = ["Schedule", "ScheduleStore", "validate_cron"]

_log = logging.getLogger("pyresqueworker.periodic")

# Workers re-publish their code-declared schedules every minute; a published one nobody has
# re-published for an hour is no longer declared by any running worker, and is not listed.
CODE_STALE_AFTER = 3600
_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                      "@hourly"})
_MAX_NAME = 200


# -- cron strings ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _parse_cron(text: str) -> tuple[str, tzinfo]:
    """``(croniter expression, zone)`` of a cron string; ValueError when it is not usable."""
    fields = text.split()
    zone: tzinfo = timezone.utc
    if len(fields) in (2, 6) and any(c.isalpha() for c in fields[-1]) and (
        "/" in fields[-1] or fields[-1].upper() in ("UTC", "GMT")
    ):
        try:
            zone = ZoneInfo(fields[-1])
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"cron {text!r}: unknown time zone {fields[-1]!r}") from None
        fields = fields[:-1]
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].lower() in _ALIASES)):
        raise ValueError(
            f"cron {text!r}: expected five fields (minute hour day-of-month month day-of-week),"
            " optionally followed by a time zone, or @hourly/@daily/@weekly/@monthly/@yearly"
        )
    expr = " ".join(fields)
    if not croniter.is_valid(expr):
        raise ValueError(f"cron {text!r} is not a valid cron expression")
    try:
        croniter(expr, datetime.now(zone)).get_next(float)
    except CroniterError:
        raise ValueError(f"cron {text!r} never fires") from None
    return expr, zone


def validate_cron(cron: str) -> None:
    """Raise ``ValueError`` with a one-line reason unless ``cron`` is a usable cron string."""
    if not isinstance(cron, str):  # lru_cache would raise TypeError on a list
        raise ValueError(f"a cron schedule must be a string, got {type(cron).__name__}")
    _parse_cron(cron)


def walker(cron: str, after: float) -> croniter:
    """A croniter whose ``get_next(float)`` yields the firings strictly after ``after``."""
    expr, zone = _parse_cron(cron)
    return croniter(expr, datetime.fromtimestamp(after, zone))


def _check_name(kind: str, value: Any, limit: int = _MAX_NAME) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the {kind} must be a non-empty string, got {value!r}")
    if len(value) > limit or not value.isprintable():
        raise ValueError(f"the {kind} must be printable and at most {limit} characters")
    return value


# -- schedules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """One periodic job: enqueue ``class_name(*args)`` to ``queue`` at every ``cron`` time.

    Constructing one validates it (``ValueError``). ``source`` is ``"redis"`` for a runtime
    schedule, ``"code"`` for one a worker's registry declares.
    """

    name: str
    cron: str
    class_name: str
    args: list[Any]
    queue: str
    description: str = ""
    enabled: bool = True
    source: str = "redis"
    last_enqueued_at: Optional[str] = None

    def __post_init__(self) -> None:
        _check_name("schedule name", self.name)
        validate_cron(self.cron)
        _check_name("job class", self.class_name, 1000)
        _check_name("queue", self.queue, 1000)
        if not isinstance(self.args, list):
            raise ValueError(f"args must be a list, got {type(self.args).__name__}")
        try:
            wire.dumps(self.args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"args cannot be encoded as JSON: {exc}") from None
        if not isinstance(self.description, str):
            raise ValueError("the description must be a string")
        if self.source not in ("redis", "code"):
            raise ValueError(f"source must be 'redis' or 'code', got {self.source!r}")

    def next_run(self, after: datetime) -> datetime:
        """The first firing strictly after ``after`` (a naive datetime is taken as UTC)."""
        if after.tzinfo is None:
            after = after.replace(tzinfo=timezone.utc)
        when = walker(self.cron, after.timestamp()).get_next(float)
        return datetime.fromtimestamp(when, timezone.utc)

    def config(self, **extra: Any) -> str:
        """The stored JSON: resque-scheduler's schedule config shape, plus ``extra`` keys."""
        return wire.dumps({"cron": self.cron, "class": self.class_name, "queue": self.queue,
                           "args": self.args, "description": self.description, **extra})

    @classmethod
    def from_config(cls, name: str, raw: bytes | str, *, source: str = "redis",
                    queue_for: Optional[Callable[[str], Optional[str]]] = None,
                    enabled: Optional[bool] = None,
                    last_enqueued_at: Optional[str] = None) -> Schedule:
        """Read a stored config; ValueError if it is not a usable cron schedule.

        As resque-scheduler reads its configs: ``class`` defaults to the name, a hash
        ``args`` is one argument, a scalar one too.
        """
        config = wire.loads(raw)
        if not isinstance(config, dict):
            raise ValueError("the schedule config is not a JSON object")
        if "cron" not in config:
            raise ValueError("only cron schedules are supported (no \"cron\" key)")
        class_name = config.get("class") or name
        queue = config.get("queue") or (queue_for(class_name) if queue_for else None)
        if not queue:
            raise ValueError(f"no queue for {class_name!r}")
        args = config.get("args")
        args = [] if args is None else args if isinstance(args, list) else [args]
        if enabled is None:
            enabled = config.get("enabled", True)
            if not isinstance(enabled, bool):
                raise ValueError("\"enabled\" must be true or false")
        return cls(name, config["cron"], class_name, args, queue,
                   config.get("description") or "", enabled, source, last_enqueued_at)


def as_text(value: Any) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def decode_hash(raw: dict[Any, Any]) -> dict[str, bytes]:
    """An ``HGETALL`` reply as text names and byte values, whatever the client decodes."""
    return {as_text(k): v if isinstance(v, bytes) else str(v).encode() for k, v in raw.items()}


class ScheduleKeys:
    """Our keys. Runtime schedules are NOT in resque-scheduler's ``persistent_schedules`` /
    ``schedules`` hashes: a Ruby resque-scheduler with dynamic schedules would load them and
    fire them on its own (without our per-firing lock), so every firing would run twice, and
    its ``reload_schedule!`` rewrites those hashes. Under ``pyresque:`` Ruby never looks."""

    def __init__(self, keys: wire.Keys) -> None:
        self.keys = keys
        self.runtime = keys.own("schedules")  # name -> JSON config (+ "enabled")
        self.code = keys.own("schedules:code")  # name -> JSON config (+ "seen_at") workers publish
        self.disabled = keys.own("schedules:disabled")  # names of disabled code schedules
        # name -> Ruby Time#to_s of the last firing, as resque-scheduler's
        # delayed:last_enqueued_at (ours, so the two never overwrite each other)
        self.last = keys.own("schedules:last-enqueued-at")
        # name -> {"cron": ..., "at": epoch}: when a worker first saw the schedule with that
        # cron; earlier firings are not its own (worker/_first_seen.py)
        self.first_seen = keys.own("schedules:first-seen")
        # Bumped by every change of the runtime schedules or of the disabled set, so idle
        # workers re-read those only then.
        self.version = keys.own("schedules:version")

    def fired(self, name: str, when: float) -> str:
        return self.keys.own(f"schedules:fired:{name}:{int(when)}")


class ScheduleStore:
    """Runtime-managed schedules in Redis, and a view of the code-declared ones."""

    def __init__(self, redis: redis.Redis, keys: wire.Keys,
                 declared: Optional[Callable[[], list[Schedule]]] = None) -> None:
        self.redis = redis
        self.keys = keys
        self._k = ScheduleKeys(keys)
        # The code-declared schedules of this process's registry: listed and switchable
        # even before (or without) a running worker of the app publishing them.
        self._declared = declared

    def _declared_here(self) -> dict[str, Schedule]:
        if self._declared is None:
            return {}
        try:
            return {s.name: s for s in self._declared()}
        except ValueError:  # a bad declaration: the worker refuses it at start with the reason
            return {}

    def __repr__(self) -> str:
        return f"ScheduleStore(namespace={self.keys.ns!r})"

    def add(self, name: str, cron: str, class_name: str, args: Sequence[Any] = (), *,
            queue: str, description: str = "", enabled: bool = True,
            replace: bool = False) -> Schedule:
        """Store a runtime schedule; workers fire it from their next tick on.

        Raises ``ValueError`` for a bad cron, name, class, queue or args, for a name already
        taken (unless ``replace``), and for the name of a code-declared schedule.
        """
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise ValueError("args must be a list of arguments")
        schedule = Schedule(name, cron, class_name, list(args), queue, description,
                            bool(enabled))
        if self._live_code(name) is not None:
            raise ValueError(f"schedule {name!r} is declared in code; pick another name")
        config = schedule.config(enabled=schedule.enabled)
        if replace:
            self.redis.hset(self._k.runtime, name, config)
        elif not self.redis.hsetnx(self._k.runtime, name, config):
            raise ValueError(f"a schedule named {name!r} exists (pass replace=True)")
        self._changed()
        last = self.redis.hget(self._k.last, name)
        return Schedule(name, schedule.cron, schedule.class_name, schedule.args, schedule.queue,
                        schedule.description, schedule.enabled, "redis",
                        as_text(last) if last is not None else None)

    def get(self, name: str) -> Optional[Schedule]:
        """The schedule called ``name`` (the code-declared one if both exist), or None."""
        found = [s for s in self.list() if s.name == name]
        return found[0] if found else None

    def list(self) -> list[Schedule]:
        """Runtime schedules and the code-declared ones (published by running workers, or
        registered in this process), by name.

        A stored config that cannot be read is left out (and logged); ``delete`` removes it.
        """
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._k.runtime)
            pipe.hgetall(self._k.code)
            pipe.smembers(self._k.disabled)
            pipe.hgetall(self._k.last)
            pipe.time()
            runtime, code, disabled_raw, last_raw, now = pipe.execute()
        disabled = {as_text(m) for m in disabled_raw}
        last = {k: as_text(v) for k, v in decode_hash(last_raw).items()}
        found: list[Schedule] = []
        code_names: set[str] = set()
        for name, raw in decode_hash(code).items():
            if is_live(raw, int(now[0])):
                schedule = _read(name, raw, source="code", enabled=name not in disabled,
                                 last_enqueued_at=last.get(name))
                if schedule is not None:
                    found.append(schedule)
                    code_names.add(name)
        for name, declared in self._declared_here().items():
            if name not in code_names:
                found.append(replace(declared, source="code", enabled=name not in disabled,
                                     last_enqueued_at=last.get(name)))
        for name, raw in decode_hash(runtime).items():
            schedule = _read(name, raw, last_enqueued_at=last.get(name))
            if schedule is not None:
                found.append(schedule)
        return sorted(found, key=lambda s: (s.name, s.source))

    def enable(self, name: str) -> bool:
        """Let ``name`` fire again; False if there is no such schedule."""
        return self._set_enabled(name, True)

    def disable(self, name: str) -> bool:
        """Stop ``name`` firing (it stays listed); False if there is no such schedule."""
        return self._set_enabled(name, False)

    def delete(self, name: str) -> bool:
        """Delete a runtime schedule; False if there is none. ``ValueError`` for a schedule
        declared in code (remove it from the code, or disable it)."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._k.runtime, name)
            pipe.hdel(self._k.last, name)
            pipe.hdel(self._k.first_seen, name)  # added again, it is a new schedule
            deleted = pipe.execute()[0]
        if deleted:
            self._changed()
            return True
        if self._live_code(name) is not None:
            raise ValueError(f"schedule {name!r} is declared in code; disable it instead")
        return False

    def _set_enabled(self, name: str, enabled: bool) -> bool:
        try:
            return self._switch(name, enabled)
        finally:
            self._changed()

    def _changed(self) -> None:
        """Tell workers to re-read the schedules (they look at this counter every few s)."""
        self.redis.incr(self._k.version)

    def _switch(self, name: str, enabled: bool) -> bool:
        found = False
        if self._live_code(name) is not None or name in self._declared_here():
            if enabled:
                self.redis.srem(self._k.disabled, name)
            else:
                self.redis.sadd(self._k.disabled, name)
            found = True
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self._k.runtime)  # type: ignore[no-untyped-call]
                    raw = pipe.hget(self._k.runtime, name)
                    if raw is None:
                        return found
                    config = wire.loads(raw)
                    if not isinstance(config, dict):
                        raise ValueError(f"the stored schedule {name!r} is not a JSON object")
                    config["enabled"] = enabled
                    pipe.multi()
                    pipe.hset(self._k.runtime, name, wire.dumps(config))
                    pipe.execute()
                    return True
                except redis.WatchError as exc:
                    raise_if_away(exc)
                    continue

    def _live_code(self, name: str) -> Optional[bytes]:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._k.code, name)
            pipe.time()
            raw, now = pipe.execute()
        return raw if raw is not None and is_live(raw, int(now[0])) else None


def is_live(raw: bytes, now: int) -> bool:
    """Whether a published code schedule was re-published recently (some worker runs it)."""
    try:
        seen = wire.loads(raw).get("seen_at")
    except (ValueError, AttributeError):
        return False
    return isinstance(seen, int) and now - seen < CODE_STALE_AFTER


def _read(name: str, raw: bytes, **kwargs: Any) -> Optional[Schedule]:
    try:
        return Schedule.from_config(name, raw, **kwargs)
    except ValueError as exc:
        _log.warning("unreadable periodic schedule %r: %s", name, exc)
        return None


