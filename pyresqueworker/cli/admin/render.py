"""Output of the ``pyresque`` commands: aligned tables for people, JSON for scripts.

Tables show times as ages ("3s ago", "in 5m") and cut long cells to fit the terminal; JSON keeps
the raw values (the stored ISO/Ruby time texts, epoch seconds) under stable field names. Text that
came from Redis is never written to the terminal raw: control characters (escape sequences,
bidi overrides) are shown escaped, so a hostile payload cannot drive the terminal.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import IO, Any, Optional

import click

from ...protocol.safe_text import escape_controls

__all__ = [
    "ProgressLine",
    "clean",
    "display_width",
    "echo_json",
    "format_age",
    "format_duration",
    "format_ms",
    "format_number",
    "key_values",
    "table",
    "terminal_width",
    "truncate",
]

ELLIPSIS = "…"
# Longest cell kept before fitting to the width: bounds the work on a 10 MB argument.
MAX_CELL = 300
GAP = "  "
# How far ``shrink_first`` columns give way before the others start to shrink.
SOFT_FLOOR = 24

# What json.dumps(ensure_ascii=False) leaves raw although a terminal may act on it.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(value: Any, *, multiline: bool = False) -> str:
    """``value`` as safe text for a terminal: one line (unless ``multiline``), controls escaped."""
    text = value if isinstance(value, str) else ("-" if value is None else str(value))
    if not multiline:
        text = text[: MAX_CELL * 4]
    return escape_controls(text, keep_newlines=multiline)


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide East Asian characters count 2)."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending in "…" when cut."""
    if display_width(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for char in text:
        step = display_width(char)
        if used + step > width - 1:
            break
        out.append(char)
        used += step
    return "".join(out) + ELLIPSIS


def terminal_width(stream: Optional[IO[str]] = None) -> Optional[int]:
    """The terminal's width when ``stream`` (stdout) is one, else ``None``: piped output is
    never cut."""
    stream = stream or sys.stdout
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return shutil.get_terminal_size((100, 24)).columns


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          right: Sequence[int] = (), width: Optional[int] = None,
          shrink_first: Sequence[int] = ()) -> str:
    """Rows under headers, columns aligned; ``right`` lists right-aligned (numeric) columns.

    With ``width``, columns are narrowed until a line fits: first the ``shrink_first`` ones
    (free text such as an error message) down to 24 columns, then always the widest, never
    below its header or 6 columns. Cut cells end in "…".
    """
    cells = [[truncate(clean(cell), MAX_CELL) for cell in row] for row in rows]
    heads = [clean(h) for h in headers]
    widths = [display_width(h) for h in heads]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], display_width(cell))
    if width is not None:
        floor = [max(display_width(h), 6) for h in heads]
        excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
        for i in shrink_first:
            cut = min(excess, widths[i] - max(floor[i], SOFT_FLOOR))
            if cut > 0:
                widths[i] -= cut
                excess -= cut
        while excess > 0:
            shrinkable = [i for i, w in enumerate(widths) if w > floor[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
            excess -= 1
    lines = []
    for row in [heads, *cells]:
        parts = []
        for i, cell in enumerate(row):
            text = truncate(cell, widths[i])
            pad = " " * (widths[i] - display_width(text))
            parts.append(pad + text if i in right else text + pad)
        lines.append(GAP.join(parts).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """``key  value`` lines with the values aligned (for ``info`` and ``failed show``)."""
    keys = [clean(key) for key, _ in pairs]
    pad = max((display_width(key) for key in keys), default=0)
    lines = []
    for key, (_, value) in zip(keys, pairs):
        first, *rest = clean(value, multiline=True).split("\n")
        lines.append(f"{key}{' ' * (pad - display_width(key))}{GAP}{first}".rstrip())
        lines += [f"{' ' * (pad + len(GAP))}{line}".rstrip() for line in rest]
    return "\n".join(lines)


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (UTF-8, terminal-unsafe characters escaped)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    # Such characters can only occur inside JSON strings, where \\uXXXX means the same.
    click.echo(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def format_number(value: int) -> str:
    return f"{value:,}"


def format_duration(seconds: Optional[float]) -> str:
    """``45s``, ``12m 5s``, ``3h 4m``, ``2d 5h``; "-" for unknown."""
    if seconds is None:
        return "-"
    total = int(max(0.0, seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60}m"
    return f"{total // 86400}d {total % 86400 // 3600}h"


def format_ms(milliseconds: float) -> str:
    """``0.4ms``, ``12ms``, ``3.2s``, then :func:`format_duration` from a minute on."""
    if milliseconds < 10:
        return f"{milliseconds:.1f}ms"
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f}s"
    return format_duration(milliseconds / 1000)


def format_age(moment: Optional[float], now: float) -> str:
    """``3s ago`` / ``in 5m`` for an epoch moment seen from ``now``; "-" for unknown."""
    if moment is None:
        return "-"
    delta = now - moment
    if -1 < delta < 0:  # sub-second clock skew
        delta = 0
    short = _short(abs(delta))
    return f"{short} ago" if delta >= 0 else f"in {short}"


def _short(seconds: float) -> str:
    total = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if total >= size:
            return f"{total // size}{unit}"
    return f"{total}s"


class ProgressLine:
    """A counter line on stderr (``label: 12,000 / 100,000 (12%)``), redrawn in place.

    Disabled (draws nothing) unless ``enabled``; by default enabled when stderr is a terminal.
    Redraws at most every ``every`` seconds, and always for the final count.
    """

    def __init__(self, label: str, *, enabled: Optional[bool] = None,
                 stream: Optional[IO[str]] = None, every: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.every = every
        self._last = float("-inf")  # the first call always draws
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < self.every:
            return
        self._last = now
        percent = f" ({100 * done // total}%)" if total else ""
        self.stream.write(f"\r{self.label}: {done:,} / {total:,}{percent}")
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the line, if one was drawn."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
