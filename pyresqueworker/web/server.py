"""Serving the dashboard: the standard library's WSGI server, one thread per request.

The dashboard is an operator's tool on a loopback port, so ``wsgiref`` with a threading mix-in
is enough and adds no dependency; put a real server or a TLS proxy in front to expose it.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import threading
from typing import Any, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ..client._client import Client
from ..log import logger
from .app import Dashboard
from .security import LOOPBACK_NAMES, is_loopback_host

__all__ = ["DashboardServer", "make_server", "serve"]

#: Seconds between the throughput samples taken while the server runs.
SAMPLE_EVERY = 5.0


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the package logger at DEBUG instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("web %s " + format, self.address_string(), *args)


class DashboardServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server answering each request on its own daemon thread."""

    daemon_threads = True
    allow_reuse_address = True


class _DashboardServer6(DashboardServer):
    address_family = socket.AF_INET6


def make_server(dashboard: Dashboard, host: str = "127.0.0.1", port: int = 5040) -> DashboardServer:
    """Bind a server for ``dashboard`` (``port=0`` picks a free port: ``server.server_port``).

    Raises ``OSError`` when the address cannot be bound.
    """
    server_class = _DashboardServer6 if ":" in host.strip("[]") else DashboardServer
    server = server_class((host.strip("[]"), port), _QuietHandler)
    server.set_app(dashboard)
    return server


def serve(client: Client, *, host: str = "127.0.0.1", port: int = 5040,
          username: Optional[str] = None, password: Optional[str] = None) -> None:
    """Run the dashboard on ``host:port`` until Ctrl-C (KeyboardInterrupt) stops it.

    Bound to a loopback address, it only answers requests whose ``Host`` is a loopback name
    (DNS rebinding cannot reach it). Raises ``OSError`` if the address cannot be bound and
    ``ValueError`` for a username without a password.
    """
    dashboard = Dashboard(client, username=username, password=password,
                          allowed_hosts=LOOPBACK_NAMES if is_loopback_host(host) else None)
    server = make_server(dashboard, host, port)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(dashboard, stop), name="web-sampler",
                               daemon=True)
    sampler.start()
    shown_host = f"[{host}]" if ":" in host else host
    logger.info("dashboard on http://%s:%d/ (redis namespace %s)", shown_host,
                server.server_port, client.keys.ns)
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C and TERM both stop it, even when started with SIGINT ignored (a shell's
        # background job, a supervisor): Python keeps an inherited SIG_IGN otherwise.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()


def _sample(dashboard: Dashboard, stop: threading.Event) -> None:
    """Feed the throughput meter every few seconds; Redis being down just skips a sample."""
    while not stop.wait(SAMPLE_EVERY):
        try:
            dashboard.sample()
        except Exception:  # a sample is optional; the server goes on
            continue
