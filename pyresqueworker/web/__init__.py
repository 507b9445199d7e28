"""A web dashboard for the Resque keys in one Redis: ``pyresque web --port 5040``.

It reads the keys resque-web reads, so Ruby and Python workers, queues and failures appear
side by side. ``make_app`` gives the WSGI application; ``serve`` runs it on a local port.
"""

from __future__ import annotations

from .app import Dashboard, make_app
from .server import make_server, serve

__all__ = ["Dashboard", "make_app", "make_server", "serve"]
