"""What a worker process needs of a slot, whether a thread (:mod:`._slot`) or a task
(:mod:`._aio_slot`): housekeeping, signals and shutdown use only this."""

from __future__ import annotations

from typing import Optional, Protocol

from ..protocol.job import Job

__all__ = ["SlotView"]


class SlotView(Protocol):
    """One job slot (one Resque worker id) as the process sees it."""

    worker_id: str
    job: Optional[Job]  # the running job, if any
    job_started: float  # epoch seconds the running job started
    status: str  # "waiting" or "paused" (pause-all-workers), for the process title
    child: Optional[int]  # --fork-per-job: the running job's child pid

    @property
    def drained(self) -> bool:
        """Ended because ``--interval 0`` found every queue empty."""

    def is_alive(self) -> bool: ...

    def join(self, timeout: Optional[float] = None) -> None: ...

    def abandon(self) -> Optional[Job]: ...

    def interrupt_if_overdue(self, now: float) -> None: ...
