"""The old import path of :mod:`pyresqueworker.jobs.retry`, kept for existing code."""

from __future__ import annotations

from .jobs.retry import BACKOFFS, Retry, retry_key_suffix, ruby_join

__all__ = ["BACKOFFS", "Retry", "retry_key_suffix", "ruby_join"]
