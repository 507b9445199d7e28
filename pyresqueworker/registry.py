"""The old import path of :mod:`pyresqueworker.jobs.registry`, kept for existing code."""

from __future__ import annotations

from .jobs.registry import *  # noqa: F403 - the shim re-exports exactly what the module exports
from .jobs.registry import __all__ as __all__
