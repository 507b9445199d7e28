"""The old import path of :mod:`pyresqueworker.jobs.testing`, kept for existing code."""

from __future__ import annotations

from .jobs.testing import perform_enqueued, run_inline

__all__ = ["perform_enqueued", "run_inline"]
