"""Django integration: ``settings.PYRESQUE``, ``manage.py pyresque_work``, ``jobs.py``
autodiscovery, database connections closed around every job, and enqueueing on commit.

Add ``"pyresqueworker.contrib.django"`` to ``INSTALLED_APPS``; see the Django page of the docs.
"""

from __future__ import annotations

from django.utils.module_loading import autodiscover_modules

from .conf import get_client
from .transactions import (
    enqueue_at_on_commit,
    enqueue_in_on_commit,
    enqueue_on_commit,
    enqueue_to_on_commit,
)

__all__ = [
    "JOBS_MODULE",
    "autodiscover",
    "enqueue_at_on_commit",
    "enqueue_in_on_commit",
    "enqueue_on_commit",
    "enqueue_to_on_commit",
    "get_client",
]

#: The module each installed app may have, imported at start-up to register its handlers.
JOBS_MODULE = "jobs"


def autodiscover() -> None:
    """Import ``<app>.jobs`` for every installed app that has one (an import error in one
    is raised, not hidden). Called by the app config's ``ready()``; safe to call again."""
    autodiscover_modules(JOBS_MODULE)
