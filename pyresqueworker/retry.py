"""The old import path of :mod:`pyresqueworker.jobs.retry`, kept for existing code."""

from __future__ import annotations

from .jobs.retry import *  # noqa: F403 - the shim re-exports exactly what the module exports
from .jobs.retry import __all__ as __all__
