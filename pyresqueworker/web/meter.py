"""Throughput as the dashboard measures it: ``stat:processed`` sampled over time, in memory."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Optional

__all__ = ["Rate", "ThroughputMeter"]


@dataclass(frozen=True)
class Rate:
    """Jobs per second over the last ``window`` seconds of samples."""

    per_second: float
    window: float


class ThroughputMeter:
    """Keeps ``(time, stat:processed)`` samples of the last ``window`` seconds.

    The rate is the processed delta between the oldest and the newest sample divided by the
    time between them; it needs two samples at least ``min_span`` seconds apart. A counter
    that went down (``stat:processed`` reset) starts the samples afresh. Thread-safe: the
    server samples from a timer thread and from page requests.
    """

    def __init__(self, window: float = 300.0, min_span: float = 1.0,
                 max_samples: int = 600) -> None:
        self.window = window
        self.min_span = min_span
        self._samples: deque[tuple[float, int]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def observe(self, processed: int, now: float) -> Optional[Rate]:
        """Record a sample taken at ``now`` (epoch seconds) and return the current rate."""
        with self._lock:
            if self._samples and (processed < self._samples[-1][1] or now < self._samples[-1][0]):
                self._samples.clear()  # counter reset or clock stepped back
            if not self._samples or now - self._samples[-1][0] >= self.min_span / 2:
                self._samples.append((now, processed))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.popleft()
            return self._rate()

    def _rate(self) -> Optional[Rate]:
        if len(self._samples) < 2:
            return None
        (first_at, first), (last_at, last) = self._samples[0], self._samples[-1]
        span = last_at - first_at
        if span < self.min_span:
            return None
        return Rate((last - first) / span, span)
