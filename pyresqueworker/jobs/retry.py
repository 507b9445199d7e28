"""Retry policies: how often a failed job is tried again, and how long to wait in between.

A failed attempt that may be retried is not written to ``resque:failed``: it goes back through
resque-scheduler's delayed queue (spec §15.1) to run again after the policy's delay, and its
attempt count lives in resque-retry's counter key (spec §19), so Ruby tooling reads both. After
the last attempt the job fails as usual, with the number of attempts in the failure entry.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ..protocol import wire

__all__ = ["BACKOFFS", "Retry", "retry_key_suffix", "ruby_join"]

#: The named strategies; a callable ``(attempt) -> seconds`` may be given instead.
BACKOFFS = ("exponential", "linear", "fixed")
Backoff = Union[str, Callable[[int], float]]


@dataclass(frozen=True)
class Retry:
    """How a failing job is retried.

    ``max`` is the number of retries after the first attempt (``max=5``: at most 6 runs).
    The delay before retry ``n`` (1-based) is, in seconds:

    * ``"exponential"``: ``base ** n`` (3, 9, 27, ... with ``base=3``);
    * ``"linear"``: ``base * n``;
    * ``"fixed"``: ``base``;
    * a callable: ``backoff(n)``.

    ``jitter`` spreads each delay uniformly over ``[delay / 2, delay * 3 / 2]`` so jobs that
    failed together do not all come back together; ``max_delay`` caps the delay. Exceptions
    listed in ``fatal`` (or subclasses of them) are never retried.
    """

    max: int = 3
    backoff: Backoff = "exponential"
    base: float = 3.0
    jitter: bool = False
    max_delay: Optional[float] = None
    fatal: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.max, int) or isinstance(self.max, bool) or self.max < 0:
            raise ValueError(f"Retry max must be a whole number >= 0, got {self.max!r}")
        if isinstance(self.backoff, str):
            if self.backoff not in BACKOFFS:
                raise ValueError(
                    f"Retry backoff must be one of {', '.join(BACKOFFS)} or a callable, "
                    f"got {self.backoff!r}")
        elif not callable(self.backoff):
            raise TypeError(f"Retry backoff must be a name or a callable, got {self.backoff!r}")
        if not math.isfinite(self.base) or self.base < 0:
            raise ValueError(f"Retry base must be a finite number >= 0, got {self.base!r}")
        if self.max_delay is not None and not self.max_delay >= 0:
            raise ValueError(f"Retry max_delay must be >= 0, got {self.max_delay!r}")
        if isinstance(self.fatal, type):
            object.__setattr__(self, "fatal", (self.fatal,))

    def delay(self, attempt: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        if callable(self.backoff):
            seconds = float(self.backoff(attempt))
        elif self.backoff == "exponential":
            seconds = self.base ** min(attempt, 64)
        elif self.backoff == "linear":
            seconds = self.base * attempt
        else:
            seconds = self.base
        if self.jitter and seconds > 0:
            seconds = rand(seconds / 2, seconds * 1.5)
        if self.max_delay is not None:
            seconds = min(seconds, self.max_delay)
        return max(0.0, seconds) if math.isfinite(seconds) else float(self.max_delay or 0.0)

    def retries(self, exc: BaseException) -> bool:
        """Whether a failure with ``exc`` may be retried at all (not fatal)."""
        return not (self.fatal and isinstance(exc, self.fatal))

    # -- carried in a payload (per-enqueue override) ------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The override as stored in a payload's ``"retry"`` field (named strategies only)."""
        if callable(self.backoff):
            raise ValueError("a Retry with a custom backoff callable cannot travel in a payload")
        if self.fatal:
            raise ValueError("a Retry with fatal exceptions cannot travel in a payload; "
                             "declare them on the handler")
        data: dict[str, Any] = {"max": self.max, "backoff": self.backoff, "base": self.base}
        if self.jitter:
            data["jitter"] = True
        if self.max_delay is not None:
            data["max_delay"] = self.max_delay
        return data

    @classmethod
    def from_json(cls, data: Any, fatal: tuple[type[BaseException], ...] = ()) -> Retry:
        """A policy from a payload's ``"retry"`` field; raises ``ValueError`` if malformed."""
        if not isinstance(data, Mapping):
            raise ValueError('"retry" must be a JSON object')
        unknown = set(data) - {"max", "backoff", "base", "jitter", "max_delay"}
        if unknown:
            raise ValueError(f'"retry" has unknown fields: {", ".join(sorted(unknown))}')
        try:
            return cls(max=data.get("max", 3), backoff=data.get("backoff", "exponential"),
                       base=float(data.get("base", 3.0)), jitter=bool(data.get("jitter", False)),
                       max_delay=data.get("max_delay"), fatal=fatal)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


def ruby_join(args: Any) -> str:
    """Ruby's ``args.join('-')`` for JSON values: nested arrays flattened, nil as ``""``.

    Exact for strings, integers, floats, booleans and nil (what resque-retry users pass);
    a JSON object is written as Ruby 3.1's ``Hash#inspect`` of plain values.
    """
    parts: list[str] = []
    _join_into(args if isinstance(args, list) else [args], parts)
    return "-".join(parts)


def _join_into(values: list[Any], parts: list[str]) -> None:
    for value in values:
        if isinstance(value, list):
            _join_into(value, parts)
        else:
            parts.append(_ruby_to_s(value))


def _ruby_to_s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return wire.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_inspect(k)}=>{_inspect(v)}" for k, v in value.items()) + "}"
    return str(value)


def _inspect(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, str):
        return wire.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inspect(v) for v in value) + "]"
    return _ruby_to_s(value)


def retry_key_suffix(class_name: str, args: Any) -> str:
    """resque-retry's key after the namespace: ``resque-retry:<Class>[:<sha1 of args>]``.

    Whitespace is removed from the whole key, as resque-retry does.
    """
    if isinstance(args, list) and not args:
        key = f"resque-retry:{class_name}"
    else:
        digest = hashlib.sha1(ruby_join(args).encode("utf-8", "surrogatepass")).hexdigest()
        key = f"resque-retry:{class_name}:{digest}"
    return "".join(key.split())
