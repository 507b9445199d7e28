"""Text from Redis made safe to show: control characters written out as escapes.

Anything in Redis may have been written by any client, so a job's arguments, an error message
or a worker id can hold an escape sequence (which a terminal obeys), a bidi override (which
makes text read differently from what it is) or a NUL. Every place that shows such text to a
person — the ``pyresque`` tables, ``pyresque-demo``, the dashboard's pages — escapes it with
:func:`escape_controls`, so all of them show the same ``\\x1b[31m`` for the same bytes.
"""

from __future__ import annotations

import re

__all__ = ["escape_controls"]

# C0/C1 controls, DEL, line/paragraph separators and bidi embedding/override/isolate marks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEP_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                                  "\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in "\t\r\n":  # white space: keep the words apart, not the layout
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\u202e``); tabs and
    carriage returns become spaces, and newlines too unless ``keep_newlines`` (a backtrace)."""
    return (_UNSAFE_KEEP_NEWLINE if keep_newlines else _UNSAFE).sub(_escape, text)
