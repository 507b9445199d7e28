"""Turning a Python exception into the fields of a Resque failure entry (spec §10.1)."""

from __future__ import annotations

import os
import traceback
from types import TracebackType
from typing import Optional

__all__ = [
    "DECODE_EXCEPTION",
    "DIRTY_EXIT",
    "PRUNE_DIRTY_EXIT",
    "TERM_EXCEPTION",
    "exception_message",
    "exception_name",
    "ruby_backtrace",
]

# Exception names Ruby tools recognise; we write them for the same situations.
DIRTY_EXIT = "Resque::DirtyExit"
PRUNE_DIRTY_EXIT = "Resque::PruneDeadWorkerDirtyExit"
TERM_EXCEPTION = "Resque::TermException"
DECODE_EXCEPTION = "Resque::Helpers::DecodeException"

# The package's root, not this subpackage: every frame of ours is left out of backtraces.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def exception_name(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``myapp.errors.Timeout`` for everything else.

    An exception may set ``resque_name`` to report itself under a Ruby name.
    """
    override = getattr(exc, "resque_name", None)
    if isinstance(override, str) and override:
        return override
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def exception_message(exc: BaseException) -> str:
    """The message only, as Ruby's ``exception.to_s`` (the class name when it is empty)."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not stop the failure being written
        text = ""
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = repr(exc.args[0])
    return text or type(exc).__name__


def _display_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def ruby_backtrace(tb: Optional[TracebackType]) -> list[str]:
    """Frames innermost first, as ``path:line:in `func'`` strings.

    Like Ruby's cut at ``lib/resque/job.rb``, frames inside this package are left out when
    any frame of the job's own code remains.
    """
    frames = traceback.extract_tb(tb)
    user = [f for f in frames if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)]
    chosen = user or list(frames)
    return [f"{_display_path(f.filename)}:{f.lineno}:in `{f.name}'" for f in reversed(chosen)]
