"""Which queues a worker watches and in what order it tries them (spec §5, §17.2).

``high,low`` is Resque's strict order. ``high=2,low=1`` is goworker's weighted form: on every
fetch the distinct queues are put in a fresh random order in which a queue comes first with
probability weight/total. ``*``, globs and ``!excluded`` expand against the ``queues`` set the
way Resque's dynamic queues do: each pattern's matches sorted, concatenated, de-duplicated.
"""

from __future__ import annotations

import difflib
import fnmatch
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

__all__ = ["QueueOrder", "QueueSpec", "QueueSpecError", "closest_queue"]

_GLOB_CHARS = frozenset("*?[]{}")


class QueueSpecError(ValueError):
    """A ``--queues`` value that cannot be used."""


def _check_name(name: str) -> None:
    """Refuse a queue name that Resque could not carry through a worker id
    (``host:pid:q1,q2``), a process title or resque-web: ``:``, white space, control
    characters (``'a b'`` is almost always a typo for ``a,b``)."""
    if ":" in name:
        raise QueueSpecError(f"queue name {name!r} contains ':' (Resque ids cannot hold it)")
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise QueueSpecError(
            f"queue name {name!r} contains white space or a control character; separate "
            "queues with ',' (e.g. --queues high,low)")


def _is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS & set(pattern))


def closest_queue(name: str, known: Iterable[str]) -> Optional[str]:
    """The known queue name most like ``name`` (``hihg`` -> ``high``), or None when none is
    close enough (difflib's ratio under 0.6): the "did you mean" of a mistyped queue."""
    matches = difflib.get_close_matches(name, [k for k in known if k != name], n=1)
    return matches[0] if matches else None


def _ruby_fnmatch(pattern: str, name: str) -> bool:
    # File.fnmatch? without flags: braces are literal, a leading dot needs an explicit dot.
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern.replace("[^", "[!"))


@dataclass(frozen=True)
class QueueSpec:
    """A parsed ``--queues`` value."""

    patterns: tuple[str, ...]
    weights: tuple[int, ...]
    exclusions: tuple[str, ...] = ()
    weighted: bool = False

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> QueueSpec:
        """Parse goworker syntax: ``high=2,low=1``, ``high,low``, ``*``, ``mail_*``, ``!slow``."""
        entries = text.split(",") if isinstance(text, str) else list(text)
        patterns: list[str] = []
        weights: list[int] = []
        exclusions: list[str] = []
        weighted = False
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            if entry.startswith("!"):
                if not entry[1:]:
                    raise QueueSpecError("'!' must be followed by a queue name or pattern")
                _check_name(entry[1:])
                exclusions.append(entry[1:])
                continue
            weight = 1
            if "=" in entry:
                weighted = True
                entry, _, weight_text = entry.partition("=")
                entry = entry.strip()
                try:
                    weight = int(weight_text)
                except ValueError:
                    raise QueueSpecError(
                        f"weight {weight_text!r} of queue {entry!r} is not a whole number"
                    ) from None
                if weight < 1:
                    raise QueueSpecError(f"weight of queue {entry!r} must be at least 1")
            if not entry:
                raise QueueSpecError("a queue weight needs a queue name before '='")
            _check_name(entry)
            if entry in patterns:
                weights[patterns.index(entry)] += weight
                continue
            patterns.append(entry)
            weights.append(weight)
        if not patterns:
            raise QueueSpecError("give at least one queue, e.g. --queues high=2,low=1")
        return cls(tuple(patterns), tuple(weights), tuple(exclusions), weighted)

    @property
    def dynamic(self) -> bool:
        """True when the queue list depends on the ``queues`` set (globs or exclusions)."""
        return bool(self.exclusions) or any(_is_glob(p) for p in self.patterns)

    @property
    def named(self) -> tuple[str, ...]:
        """The queues named outright, not matched by a glob (``*``, ``mail_*``)."""
        return tuple(p for p in self.patterns if not _is_glob(p))

    @property
    def id_queues(self) -> tuple[str, ...]:
        """The queue part of the worker id: patterns without weights or exclusions."""
        return self.patterns

    def __str__(self) -> str:
        parts = [f"{p}={w}" if self.weighted else p for p, w in zip(self.patterns, self.weights)]
        return ",".join(parts + ["!" + e for e in self.exclusions])

    def expand(self, known: Iterable[str] = ()) -> list[tuple[str, int]]:
        """Concrete queues with their weights, in priority order, for the known queue names."""
        if not self.dynamic:
            return list(zip(self.patterns, self.weights))
        names = sorted({n for n in known if not any(_ruby_fnmatch(e, n) for e in self.exclusions)})
        seen: dict[str, int] = {}
        for pattern, weight in zip(self.patterns, self.weights):
            if _is_glob(pattern):
                matches: Sequence[str] = [n for n in names if _ruby_fnmatch(pattern, n)]
            else:
                matches = [pattern] if pattern in names else []
            for name in matches:
                seen.setdefault(name, weight)
        return list(seen.items())

    @staticmethod
    def order(expanded: Sequence[tuple[str, int]], weighted: bool, rng: random.Random) -> list[str]:
        """The order to try queues in for one fetch.

        Weighted: a random permutation where each queue is first with probability w/total,
        then next among the rest likewise (keys ``u ** (1/w)``, largest first).
        """
        if not weighted or len(expanded) < 2:
            return [name for name, _ in expanded]
        keyed = sorted(expanded, key=lambda item: rng.random() ** (1.0 / item[1]), reverse=True)
        return [name for name, _ in keyed]


class QueueOrder:
    """The queues one claim tries, in order: the one place that turns ``--queues`` into that.

    Strict static queues have one order for ever (built once, not per job); weighted queues get
    a fresh shuffle per claim; globs are expanded against ``resque:queues``, whose members the
    caller reads when :attr:`stale` says so (the thread and asyncio workers read Redis their own
    way) and hands to :meth:`refresh`.
    """

    REFRESH = 1.0  # seconds an expanded glob list is used before it is read again

    def __init__(self, spec: QueueSpec, rng: Optional[random.Random] = None) -> None:
        self.spec = spec
        self._rng = rng or random.Random()
        self._expanded = spec.expand()
        self._expanded_at = float("-inf")  # never: a glob list is read before the first claim
        self._fixed: Optional[list[str]] = (
            None if spec.dynamic or spec.weighted else [q for q, _ in self._expanded])

    @property
    def stale(self) -> bool:
        """Whether the glob expansion should be read again before the next claim."""
        return self.spec.dynamic and time.monotonic() - self._expanded_at > self.REFRESH

    def refresh(self, members: Iterable[bytes | str]) -> None:
        """Expand the globs against the members of ``resque:queues`` just read."""
        known = [m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)
                 for m in members]
        self._expanded = self.spec.expand(known)
        self._expanded_at = time.monotonic()

    def postpone(self, seconds: float) -> None:
        """Reading ``resque:queues`` failed: use the current expansion ``seconds`` longer."""
        self._expanded_at = time.monotonic() + seconds

    def next(self) -> list[str]:
        """The queues to try for one claim."""
        if self._fixed is not None:
            return self._fixed
        return self.spec.order(self._expanded, self.spec.weighted, self._rng)
