"""The default client, configured once, that job handles enqueue with.

``archive.enqueue(7)`` (see :mod:`pyresqueworker.jobs.handles`) needs a Redis to write to. It uses
the client made from :func:`configure`'s settings, or, when the program never called it, from
the environment every entry point reads (``PYRESQUE_REDIS``, ``RESQUE_REDIS_URL``,
``REDIS_URL``, first set wins, else ``redis://127.0.0.1:6379/0``; ``PYRESQUE_NAMESPACE``).

Both clients are made on first use, under a lock, so threads starting together share one.
redis.asyncio connections belong to the event loop they were opened in, so there is one
:class:`~pyresqueworker.AsyncClient` per running loop (two ``asyncio.run`` calls
get two); it is dropped once its loop is closed and another loop asks for one.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, Any, Optional

from ..jobs.handles import use_default_clients
from ._client import Client

if TYPE_CHECKING:
    from ._aio_client import AsyncClient

__all__ = ["configure", "default_async_client", "default_client"]

_lock = threading.Lock()
_url: Optional[str] = None
_namespace: Optional[str] = None
_options: dict[str, Any] = {}
_client: Optional[Client] = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_closing: set[asyncio.Task[None]] = set()


def configure(url: Optional[str] = None, *, namespace: Optional[str] = None,
              **options: Any) -> None:
    """Set what the default clients connect to; job handles enqueue through them.

    ``url``: any URL :class:`~pyresqueworker.Client` takes; ``None`` reads the
    environment as ``pyresque-work`` does. ``namespace``: the key prefix (default
    ``PYRESQUE_NAMESPACE``, else ``resque:``). Other keywords (``queue_for=``) go to the
    :class:`~pyresqueworker.Client` and
    :class:`~pyresqueworker.AsyncClient` constructors.

    Clients made under earlier settings are closed (an async one on its own loop, when that
    loop is still open); the next enqueue makes new ones. ``configure()`` with no arguments
    goes back to the environment.
    """
    global _url, _namespace, _options, _client
    with _lock:
        old, olds_async = _client, list(_async_clients.items())
        _url, _namespace, _options, _client = url, namespace, dict(options), None
        _async_clients.clear()
    if old is not None:
        old.close()
    for loop, client in olds_async:
        _close_on(loop, client)


def default_client() -> Client:
    """The process's default :class:`~pyresqueworker.Client`, made on first use."""
    client = _client
    if client is not None:
        return client
    return _make_client()


def default_async_client() -> AsyncClient:
    """The default :class:`~pyresqueworker.AsyncClient` of the running event loop.

    Raises ``RuntimeError`` when no event loop is running (call it from a coroutine).
    """
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is not None:
        return client
    from ._aio_client import AsyncClient

    with _lock:
        client = _async_clients.get(loop)
        if client is None:
            # A client holds its loop alive (its connections' streams refer to it), so the
            # weak keys alone never let go: a closed loop's client is dropped here.
            for closed in [old for old in _async_clients if old.is_closed()]:
                del _async_clients[closed]
            client = AsyncClient(**_settings())
            _async_clients[loop] = client
        return client


def _make_client() -> Client:
    global _client
    with _lock:
        if _client is None:
            _client = Client(**_settings())
        return _client


def _settings() -> dict[str, Any]:
    """Constructor arguments for either client: the configured ones; what is not configured
    the clients read from the environment (see :mod:`pyresqueworker.protocol.urls`)."""
    return {"url": _url, "namespace": _namespace, **_options}


def _close_on(loop: asyncio.AbstractEventLoop, client: AsyncClient) -> None:
    """Close an async client on the loop its connections belong to (nothing to do if closed)."""

    def start() -> None:
        task = loop.create_task(client.close())
        _closing.add(task)  # held until done: the loop keeps only a weak reference to tasks
        task.add_done_callback(_closing.discard)

    if loop.is_closed():
        return
    try:
        loop.call_soon_threadsafe(start)
    except RuntimeError:  # the loop closed meanwhile: its connections went with it
        pass


# Handles without a client of their own (``archive.enqueue(...)``) enqueue through these.
use_default_clients(default_client, default_async_client)
