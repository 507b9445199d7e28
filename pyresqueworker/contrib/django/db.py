"""Database connections closed before and after every job, as Django does around a request.

A worker thread lives for days; without this, a connection the database dropped in the
night, or one a failed job left in a broken transaction, would fail every later job of that
thread. :func:`close_db_connections` is registry middleware, installed by the
``pyresque_work`` command only (not in web processes, where ``run_inline`` in a test would
otherwise close the test's own connection).

Sync work (the handler, the class's hooks) runs in the middleware's thread, so
``close_old_connections()`` there closes what it used, honouring ``CONN_MAX_AGE``. An
``async def`` handler runs on an event loop, where Django refuses database calls
(``SynchronousOnlyOperation``): its ORM work goes through ``sync_to_async`` (the async ORM
methods do too), which by default runs in one thread shared by every async job of the
process, out of the middleware's reach. So, as Django's ASGI handler does for each request,
each job gets its own thread-sensitive context: its ``sync_to_async`` calls run in a thread
of its own, made only if the job uses one, whose connections are closed in that thread when
the job ends (never from the loop) before the thread is let go.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.db import close_old_connections, connections

from ...jobs.registry import Registry
from ...protocol.job import Job, JobCall

__all__ = ["close_db_connections", "install"]

_installed: weakref.WeakSet[Registry] = weakref.WeakSet()


def close_db_connections(job: Job, call: JobCall, call_next: Callable[[], Any]) -> Any:
    """Middleware: close this thread's unusable or expired connections before and after the
    job, and every connection the job's ``sync_to_async`` calls opened."""
    close_old_connections()
    try:
        with _own_sync_thread():
            return call_next()
    finally:
        close_old_connections()


@contextmanager
def _own_sync_thread() -> Iterator[None]:
    """``async with ThreadSensitiveContext()``, entered from the job's (sync) thread.

    The context variable is inherited by the job's coroutine, which the worker starts from
    this thread (``run_coroutine_threadsafe`` copies the caller's context). asgiref creates
    the context's thread on its first ``sync_to_async`` call; the async ``__aexit__`` cannot
    run here, so its steps are taken by hand, with the connections closed first.
    """
    context = ThreadSensitiveContext()
    token = SyncToAsync.thread_sensitive_context.set(context)
    try:
        yield
    finally:
        SyncToAsync.thread_sensitive_context.reset(token)
        executor = SyncToAsync.context_to_thread_executor.pop(context, None)
        if executor is not None:
            try:
                # The thread ends here, so even a CONN_MAX_AGE connection cannot be reused.
                executor.submit(connections.close_all).result()
            finally:
                executor.shutdown(wait=True)


def install(registry: Registry) -> None:
    """Add :func:`close_db_connections` to ``registry`` (once, however often called)."""
    if registry not in _installed:
        registry.middleware(close_db_connections)
        _installed.add(registry)
