"""The dashboard as a WSGI application: routing, basic auth, CSRF, headers, error pages.

Pages are GET; every change is a POST to ``/action/...`` carrying a CSRF token, answered with
a redirect back to a page that shows the result as a flash message (post/redirect/get).
"""

from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import parse_qs, quote

import jinja2
import redis

from .. import _version
from ..client._client import Client
from ..client.history import History
from ..log import logger
from ..protocol.connection import describe
from ..protocol.safe_text import escape_controls
from ..worker.timeseries import SeriesStore
from . import batches, chart_data, pages
from .actions import ACTIONS, ActionError
from .meter import ThroughputMeter
from .security import (
    BasicAuth,
    CsrfTokens,
    host_allowed,
    new_session_id,
    parse_cookies,
    same_origin,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["Dashboard", "make_app"]

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "pyresque_web"
#: Largest POST body read (the forms are a few short fields).
MAX_FORM_BYTES = 64 * 1024
#: Sessions whose pending flash messages are kept (oldest dropped first).
MAX_FLASH_SESSIONS = 1000
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

# No inline script or style anywhere: the CSP forbids both, so injected markup could not run
# even if it ever reached a page unescaped.
SECURITY_HEADERS = [
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]

Headers = list[tuple[str, str]]


class Response:
    """Status, headers and body of one answer."""

    def __init__(self, status: str, body: bytes = b"", headers: Optional[Headers] = None,
                 content_type: str = "text/html; charset=utf-8") -> None:
        self.status = status
        self.body = body
        self.headers: Headers = [("Content-Type", content_type), *(headers or [])]


class Request:
    """What a handler needs from the WSGI environ, decoded."""

    def __init__(self, environ: WSGIEnvironment, session: str) -> None:
        self.environ = environ
        self.method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        # PEP 3333 hands the path over as latin-1 code points of the original bytes.
        raw_path = str(environ.get("PATH_INFO", "") or "/")
        self.path = raw_path.encode("latin-1", "replace").decode("utf-8", "replace")
        self.query = _first_values(str(environ.get("QUERY_STRING", "")))
        self.session = session

    def int_arg(self, name: str, default: int = 0) -> int:
        """A non-negative integer query argument; anything else gives ``default``."""
        try:
            return max(0, int(self.query.get(name, default)))
        except ValueError:
            return default


def _first_values(text: str) -> dict[str, str]:
    parsed = parse_qs(text, keep_blank_values=True, max_num_fields=100)
    return {name: values[0] for name, values in parsed.items()}


class Dashboard:
    """The WSGI application. Build it with :func:`make_app`.

    ``allowed_hosts`` (``None``: any) limits the ``Host`` header; :func:`serve` sets it to the
    loopback names when bound to a loopback address. ``clock`` gives epoch seconds (tests).
    """

    def __init__(self, client: Client, *, username: Optional[str] = None,
                 password: Optional[str] = None, secret: Optional[bytes] = None,
                 allowed_hosts: Optional[Iterable[str]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        if (username is None) != (password is None) or username == "":
            raise ValueError("basic auth needs both a non-empty username and a password")
        self.client = client
        self.auth = BasicAuth(username, password) if username and password is not None else None
        self.csrf = CsrfTokens(secret)
        self.allowed_hosts = None if allowed_hosts is None else frozenset(allowed_hosts)
        self.clock = clock
        self.meter = ThroughputMeter()
        self.series = SeriesStore(client.redis, client.keys)
        self._flashes: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
        self._flash_lock = threading.Lock()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,  # every value is escaped unless a template says otherwise: none do
            finalize=_shown,  # ... and every value's control characters too: none can forget
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["pathq"] = lambda value: quote(str(value), safe="")
        self.static = {
            path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
            for path in (HERE / "static").iterdir() if path.suffix in _STATIC_TYPES
        }

    # -- WSGI entry -------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        response, session_cookie = self._dispatch(environ)
        headers = response.headers + SECURITY_HEADERS
        if session_cookie:
            headers.append(("Set-Cookie", f"{SESSION_COOKIE}={session_cookie}; Path=/; "
                                          "HttpOnly; SameSite=Strict"))
        headers.append(("Content-Length", str(len(response.body))))
        start_response(response.status, headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [response.body]

    def sample(self) -> None:
        """Take a throughput sample now (the server calls this on a timer)."""
        processed = self.client.redis.get(self.client.keys.stat("processed"))
        self.meter.observe(pages._int(processed), self.clock())

    def _dispatch(self, environ: WSGIEnvironment) -> tuple[Response, Optional[str]]:
        if not host_allowed(environ, self.allowed_hosts):
            return self._error("400 Bad Request", "Unknown Host header."), None
        if self.auth is not None and not self.auth.check(environ.get("HTTP_AUTHORIZATION")):
            response = self._error("401 Unauthorized", "Sign in to see the dashboard.")
            response.headers.append(("WWW-Authenticate",
                                     'Basic realm="pyresque", charset="UTF-8"'))
            return response, None
        cookie = parse_cookies(environ.get("HTTP_COOKIE")).get(SESSION_COOKIE, "")
        new_cookie = None
        if not (20 <= len(cookie) <= 64 and cookie.replace("-", "").replace("_", "").isalnum()):
            cookie = new_cookie = new_session_id()
        request = Request(environ, cookie)
        try:
            return self._route(request), new_cookie
        except (redis.ConnectionError, redis.TimeoutError):
            return self._error("503 Service Unavailable",
                               f"Redis is unreachable ({describe(self.client.redis)})."), new_cookie
        except redis.RedisError as exc:
            logger.warning("dashboard: redis error on %s: %s", request.path, exc)
            return self._error("500 Internal Server Error",
                               f"Redis refused the request: {exc}"), new_cookie
        except Exception:
            logger.exception("dashboard: error on %s", request.path)
            return self._error("500 Internal Server Error",
                               "The dashboard hit an error; see its log."), new_cookie

    # -- routing ----------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        path = request.path
        if path in ACTIONS:
            if request.method != "POST":
                response = self._error("405 Method Not Allowed", "Actions are POST only.")
                response.headers.append(("Allow", "POST"))
                return response
            return self._action(request)
        if request.method not in ("GET", "HEAD"):
            response = self._error("405 Method Not Allowed", "Pages are GET only.")
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        handler = self._page_handler(path)
        if handler is None:
            return self._error("404 Not Found", "No such page.")
        return handler(request)

    def _page_handler(self, path: str) -> Optional[Callable[[Request], Response]]:
        simple: dict[str, Callable[[Request], Response]] = {
            "/": self._overview, "/queues": self._queues, "/workers": self._workers,
            "/failed": self._failed, "/delayed": self._delayed, "/schedules": self._schedules,
            "/history": self._history, "/stats": self._stats, "/charts": self._charts,
            "/batches": self._batches,
        }
        if path in simple:
            return simple[path]
        if path.startswith("/queues/") and len(path) > len("/queues/"):
            return self._queue
        if path.startswith("/delayed/") and path[len("/delayed/"):].isdigit():
            return self._delayed_at
        if path.startswith("/batches/") and len(path) > len("/batches/"):
            return self._batch
        return None

    # -- pages ------------------------------------------------------------------------------

    def _overview(self, request: Request) -> Response:
        now = self.clock()
        data = pages.overview(self.client, self.meter, now)
        data["jobs_chart"] = chart_data.jobs_chart(self.series, now, hours=1, wide=True)
        return self._page(request, "overview.html", data)

    def _charts(self, request: Request) -> Response:
        hours = request.int_arg("hours", 3)
        data = chart_data.charts_page(self.series, History(self.client.redis, self.client.keys),
                                      self.clock(), hours if hours in chart_data.HOURS else 3)
        return self._page(request, "charts.html", data)

    def _queues(self, request: Request) -> Response:
        return self._page(request, "queues.html", pages.queues(self.client, self.clock()))

    def _queue(self, request: Request) -> Response:
        name = request.path[len("/queues/"):]
        data = pages.queue_detail(self.client, name, request.int_arg("start"), self.clock())
        return self._page(request, "queue.html", data)

    def _workers(self, request: Request) -> Response:
        return self._page(request, "workers.html", pages.workers(self.client, self.clock()))

    def _failed(self, request: Request) -> Response:
        return self._page(request, "failed.html",
                          pages.failed(self.client, request.int_arg("start")))

    def _delayed(self, request: Request) -> Response:
        data = pages.delayed(self.client, request.int_arg("start"), self.clock())
        return self._page(request, "delayed.html", data)

    def _delayed_at(self, request: Request) -> Response:
        timestamp = int(request.path[len("/delayed/"):])
        data = pages.delayed_at(self.client, timestamp, request.int_arg("start"))
        return self._page(request, "delayed_at.html", data)

    def _batches(self, request: Request) -> Response:
        return self._page(request, "batches.html", batches.batch_list(self.client, self.clock()))

    def _batch(self, request: Request) -> Response:
        data = batches.batch_detail(self.client, request.path[len("/batches/"):],
                                    request.int_arg("start"), self.clock())
        if data is None:
            return self._error("404 Not Found", "No such batch (never made, or expired: a "
                                                "completed batch is kept for a day).")
        return self._page(request, "batch.html", data)

    def _schedules(self, request: Request) -> Response:
        return self._page(request, "schedules.html", pages.schedules(self.client, self.clock()))

    def _history(self, request: Request) -> Response:
        before_text = request.query.get("before", "")
        try:
            before = float(before_text) if before_text else None
        except ValueError:
            before = None
        data = pages.history(self.client, request.query.get("id", "").strip(),
                             request.query.get("class", "").strip(), before)
        return self._page(request, "history.html", data)

    def _stats(self, request: Request) -> Response:
        return self._page(request, "stats.html", pages.stats(self.client))

    def _static(self, name: str) -> Response:
        found = self.static.get(name)
        if found is None:
            return self._error("404 Not Found", "No such file.")
        body, content_type = found
        return Response("200 OK", body, content_type=content_type)

    # -- actions ----------------------------------------------------------------------------

    def _action(self, request: Request) -> Response:
        form = self._read_form(request.environ)
        if form is None:
            return self._error("413 Content Too Large", "The form is too large.")
        if not same_origin(request.environ):
            return self._error("403 Forbidden", "The request came from another site.")
        if not self.csrf.valid(request.session, form.get("csrf")):
            return self._error("403 Forbidden",
                               "The form has expired or did not come from this dashboard; "
                               "reload the page and try again.")
        action, default_page = ACTIONS[request.path]
        try:
            self._flash(request.session, "ok", action(self.client, form))
        except ActionError as exc:
            self._flash(request.session, "error", str(exc))
        back = form.get("back", "")
        # Only a path on this dashboard: never an absolute or protocol-relative URL.
        if not back.startswith("/") or back.startswith("//") or "\\" in back:
            back = default_page
        location = quote(back, safe="/?=&%:+,;@-._~")
        return Response("303 See Other", headers=[("Location", location)])

    @staticmethod
    def _read_form(environ: WSGIEnvironment) -> Optional[dict[str, str]]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_FORM_BYTES:
            return None
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        return _first_values(body.decode("utf-8", "replace"))

    # -- rendering --------------------------------------------------------------------------

    def _flash(self, session: str, level: str, text: str) -> None:
        with self._flash_lock:
            self._flashes.setdefault(session, []).append((level, text))
            self._flashes.move_to_end(session)
            while len(self._flashes) > MAX_FLASH_SESSIONS:
                self._flashes.popitem(last=False)

    def _take_flashes(self, session: str) -> list[tuple[str, str]]:
        with self._flash_lock:
            return self._flashes.pop(session, [])

    def _page(self, request: Request, template: str, data: Mapping[str, Any]) -> Response:
        query = request.environ.get("QUERY_STRING", "")
        context = {
            **data,
            "csrf": self.csrf.token(request.session),
            "flashes": self._take_flashes(request.session),
            "path": request.path,
            "here": quote(request.path, safe="/") + (f"?{query}" if query else ""),
            "version": _version.__version__,
            "namespace": self.client.keys.ns,
            "redis_where": describe(self.client.redis),
        }
        body = self.templates.get_template(template).render(context)
        return Response("200 OK", body.encode("utf-8"))

    def _error(self, status: str, message: str) -> Response:
        try:
            body = self.templates.get_template("error.html").render(
                status=status, message=message, version=_version.__version__)
        except jinja2.TemplateError:
            body = f"<!doctype html><title>{html.escape(status)}</title>" \
                   f"<p>{html.escape(escape_controls(message))}</p>"
        return Response(status, body.encode("utf-8"))


def _shown(value: Any) -> Any:
    """Every ``{{ value }}`` of every template, before it is escaped: text with its control
    characters written out as the CLI writes them (``\\x1b``), since any client may have put
    an escape sequence or a bidi override into what Redis holds. Newlines stay (backtraces in
    ``<pre>``). Markup is what a macro made of values that already came through here."""
    if value is None or isinstance(value, (int, float)) or hasattr(value, "__html__"):
        return value
    return escape_controls(str(value), keep_newlines=True)


def make_app(client: Client, *, username: Optional[str] = None, password: Optional[str] = None,
             secret: Optional[bytes] = None) -> WSGIApplication:
    """The dashboard as a WSGI application reading ``client``'s Redis and namespace.

    With ``username`` (and ``password``) every request needs HTTP basic auth. ``secret`` keys
    the CSRF tokens; by default a random one per process (tokens then die with the process).
    """
    return Dashboard(client, username=username, password=password, secret=secret)
