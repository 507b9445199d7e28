"""The two values every part of a job's life passes around: the claimed job and its call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["Job", "JobCall"]


@dataclass
class Job:
    """A job as claimed from Redis.

    ``raw`` is the queue item exactly as it was stored. ``payload`` is its decoded JSON object,
    or ``None`` when it could not be decoded (``decode_error`` then says why).
    """

    queue: str
    raw: bytes
    payload: Optional[dict[str, Any]] = None
    worker_id: str = ""
    decode_error: Optional[str] = None

    @property
    def class_name(self) -> str:
        """The payload's ``class`` (empty when absent or not a string)."""
        if self.payload is None:
            return ""
        value = self.payload.get("class")
        return value if isinstance(value, str) else ""

    @property
    def raw_text(self) -> str:
        """The raw item as text, lossless for UTF-8 and readable for anything else."""
        return self.raw.decode("utf-8", "backslashreplace")


@dataclass
class JobCall:
    """What a decoder makes of a job: which handler to call, and with what.

    ``class_name`` picks the handler in the registry (for ActiveJob this is ``job_class``,
    not the wrapper); ``metadata`` carries anything else the handler or middleware may want
    (``job_id``, ``executions``, ...).
    """

    class_name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
