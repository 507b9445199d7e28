"""The old import path of :mod:`pyresqueworker.jobs.testing`, kept for existing code."""

from __future__ import annotations

from .jobs.testing import *  # noqa: F403 - the shim re-exports exactly what the module exports
from .jobs.testing import __all__ as __all__
