"""JSON as Ruby's Resque writes it: compact, raw UTF-8, and Ruby's floats.

Python and Ruby print most values alike; floats differ (``1e+20`` is Ruby's ``1.0e+20``, and
Oj writes ``-0.0`` as ``0.0``). The C encoder of the json module cannot be told how to print a
float, so a value holding such a float (rare) is written out here.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ENCODER", "dumps"]

ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _ruby_float(value: float) -> str:
    """Ruby's Float#to_s: ``1.0e+20`` where Python writes ``1e+20``; ``0.0`` for ``-0.0``."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not valid JSON (Ruby refuses to encode it)")
    if value == 0.0:
        return "0.0"  # Oj, Resque's encoder, writes -0.0 as 0.0 (Resque.dequeue matches bytes)
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = mantissa + "e" + exponent
    return text


def _needs_ruby_floats(obj: Any) -> bool:
    """True if ``obj`` holds a float whose Python repr differs from Ruby's (exponent form,
    negative zero)."""
    if isinstance(obj, float):
        text = repr(obj)
        return "e" in text or text == "-0.0" or obj != obj or obj in (float("inf"), float("-inf"))
    if isinstance(obj, dict):
        return any(_needs_ruby_floats(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_needs_ruby_floats(v) for v in obj)
    return False


def dumps(obj: Any) -> str:
    """Encode ``obj`` to JSON exactly as Ruby Resque would: compact, raw UTF-8, Ruby floats.

    Dict keys keep insertion order, which is how the callers express Ruby's key order.
    """
    if not _needs_ruby_floats(obj):
        return ENCODER.encode(obj)
    # The C encoder cannot be told how to print floats: this rare case is written out here.
    parts: list[str] = []
    _encode_ruby(obj, parts, set())
    return "".join(parts)


def _encode_ruby(obj: Any, parts: list[str], open_ids: set[int]) -> None:
    """:func:`dumps`'s JSON with Ruby's floats, as the json module writes everything else
    (strings by the C encoder; keys converted as it converts them)."""
    if isinstance(obj, str):
        parts.append(ENCODER.encode(obj))
    elif obj is None or obj is True or obj is False:
        parts.append("null" if obj is None else "true" if obj else "false")
    elif isinstance(obj, int):
        parts.append(int.__repr__(obj))
    elif isinstance(obj, float):
        parts.append(_ruby_float(obj))
    elif isinstance(obj, (dict, list, tuple)):
        if id(obj) in open_ids:
            raise ValueError("Circular reference detected")
        open_ids.add(id(obj))
        if isinstance(obj, dict):
            parts.append("{")
            for i, (key, value) in enumerate(obj.items()):
                parts.append(("," if i else "") + ENCODER.encode(_json_key(key)) + ":")
                _encode_ruby(value, parts, open_ids)
            parts.append("}")
        else:
            parts.append("[")
            for i, item in enumerate(obj):
                if i:
                    parts.append(",")
                _encode_ruby(item, parts, open_ids)
            parts.append("]")
        open_ids.discard(id(obj))
    else:
        ENCODER.default(obj)  # raises TypeError, as json.dumps does


def _json_key(key: Any) -> str:
    """A dict key as the json module turns it into a string."""
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return _ruby_float(key)
    if key is None or key is True or key is False:
        return "null" if key is None else "true" if key else "false"
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
