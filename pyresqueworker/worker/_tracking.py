"""A slot's running job as the other threads of the process see it.

The main thread (the process title, the shutdown deadline) and the housekeeper (the timeout
watchdog, ``Processing ...`` in the worker key) read a slot's job while the slot runs it, so
the job and its state change under ``lock``: idle → running → finishing → idle, or running →
abandoned when the shutdown gives up on it (the process then requeues or fails it, and the
slot must not finish it again).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from ..log import logger
from ..protocol.job import Job
from ._claim_values import Finish
from ._held import Claimed
from ._job_outcome import failure_for, make_job

__all__ = ["JobTracking"]

_IDLE, _RUNNING, _FINISHING, _ABANDONED = "idle", "running", "finishing", "abandoned"


class JobTracking:
    """The running job of one slot, under ``lock``; a slot driver inherits it."""

    worker_id: str

    def _init_tracking(self) -> None:
        self.lock = threading.Lock()
        self.state = _IDLE
        self.job: Optional[Job] = None
        self.job_started = 0.0  # epoch seconds

    def begin(self, claimed: Claimed) -> Job:
        """The claimed job is now running in this slot."""
        job = make_job(claimed, self.worker_id)
        with self.lock:
            self.job, self.state, self.job_started = job, _RUNNING, time.time()
        return job

    def returned(self) -> bool:
        """The job returned; False if the shutdown abandoned it meanwhile (the process has
        dealt with it), else it is now being finished."""
        with self.lock:
            if self.state == _ABANDONED:
                return False
            self.state = _FINISHING
            return True

    def end(self) -> None:
        """The job's completion is on its way: the slot is idle."""
        with self.lock:
            self.job, self.state = None, _IDLE

    def internal_error(self, claimed: Claimed, exc: Exception) -> Optional[Finish]:
        """An error of our own bookkeeping around a job fails the job, never drops it (it was
        claimed into this slot's worker key, which the next claim overwrites); None if the
        shutdown abandoned it."""
        logger.exception("internal error around a job; failing it", extra={
            "worker": self.worker_id, "queue": claimed.queue})
        with self.lock:
            if self.state == _ABANDONED:
                return None
            self.job, self.state = None, _IDLE
        return Finish("2", failure_for(make_job(claimed, self.worker_id), exc))

    def abandon(self) -> Optional[Job]:
        """Called at the shutdown deadline: returns the job if it was still running."""
        with self.lock:
            if self.state != _RUNNING:
                return None
            self.state = _ABANDONED
            return self.job
