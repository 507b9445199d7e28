"""Putting jobs into Redis and reading Resque's state back: ``Client`` and ``AsyncClient``,
delayed and unique jobs, the failed queue, inspection, history, the default clients.

May import ``jobs``, ``protocol`` and ``log``. ``pyresqueworker.client`` keeps the names the
old ``client`` module exported.
"""

from __future__ import annotations

from ._aio_client import AsyncClient
from ._client import Client, NoClassError, NoQueueError, WorkerInfo

__all__ = ["AsyncClient", "Client", "NoClassError", "NoQueueError", "WorkerInfo"]
