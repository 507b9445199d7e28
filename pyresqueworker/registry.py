"""The old import path of :mod:`pyresqueworker.jobs.registry`, kept for existing code."""

from __future__ import annotations

from .jobs.registry import (
    Decoder,
    DontPerform,
    Handler,
    Middleware,
    PayloadError,
    Registry,
    UnknownJobClass,
    current_job,
    default_registry,
    job,
    middleware,
)

__all__ = [
    "Decoder",
    "DontPerform",
    "Handler",
    "Middleware",
    "PayloadError",
    "Registry",
    "UnknownJobClass",
    "current_job",
    "default_registry",
    "job",
    "middleware",
]
