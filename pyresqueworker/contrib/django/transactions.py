"""Enqueue when the database transaction commits, so a worker never looks for a row that is
not there yet (or that a rollback took back).

Each helper wraps ``django.db.transaction.on_commit``: inside ``transaction.atomic()`` the job
is pushed once the outermost block on ``using`` commits, and never if it rolls back; outside
a transaction (autocommit) it is pushed at once. The job goes through ``client`` (default:
:func:`~pyresqueworker.contrib.django.get_client`, built from ``settings.PYRESQUE``).
``robust=True`` logs an enqueue that fails after the commit instead of raising it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Optional

from django.db import transaction

from ...client._client import Client
from .conf import get_client

if TYPE_CHECKING:
    from ...client.delayed import When

__all__ = ["enqueue_at_on_commit", "enqueue_in_on_commit", "enqueue_on_commit",
           "enqueue_to_on_commit"]


def _after_commit(call: Callable[[Client], Any], using: Optional[str], robust: bool,
                  client: Optional[Client]) -> None:
    # The client is looked up at commit time: a test's override_settings may have swapped it.
    transaction.on_commit(lambda: call(client or get_client()), using=using, robust=robust)


def enqueue_on_commit(class_name: str, *args: Any, queue: Optional[str] = None,
                      using: Optional[str] = None, robust: bool = False,
                      client: Optional[Client] = None, **options: Any) -> None:
    """:meth:`Client.enqueue <pyresqueworker.Client.enqueue>` once the transaction on the
    database ``using`` commits. ``options``: ``retry``, ``job_id``."""
    _after_commit(lambda c: c.enqueue(class_name, *args, queue=queue, **options),
                  using, robust, client)


def enqueue_to_on_commit(queue: str, class_name: str, *args: Any, using: Optional[str] = None,
                         robust: bool = False, client: Optional[Client] = None,
                         **options: Any) -> None:
    """:meth:`Client.enqueue_to <pyresqueworker.Client.enqueue_to>` on commit."""
    _after_commit(lambda c: c.enqueue_to(queue, class_name, *args, **options),
                  using, robust, client)


def enqueue_at_on_commit(when: When, class_name: str, *args: Any, queue: Optional[str] = None,
                         using: Optional[str] = None, robust: bool = False,
                         client: Optional[Client] = None) -> None:
    """:meth:`Client.enqueue_at <pyresqueworker.Client.enqueue_at>` (run at ``when``) on
    commit."""
    _after_commit(lambda c: c.enqueue_at(when, class_name, *args, queue=queue),
                  using, robust, client)


def enqueue_in_on_commit(seconds: float | timedelta, class_name: str, *args: Any,
                         queue: Optional[str] = None, using: Optional[str] = None,
                         robust: bool = False, client: Optional[Client] = None) -> None:
    """:meth:`Client.enqueue_in <pyresqueworker.Client.enqueue_in>` on commit: the delay
    counts from the commit."""
    _after_commit(lambda c: c.enqueue_in(seconds, class_name, *args, queue=queue),
                  using, robust, client)
