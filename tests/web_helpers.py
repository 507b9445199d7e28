"""Shared by the dashboard tests: Ruby-written data from the golden files, hostile payloads,
and a small WSGI client that keeps the session cookie and reads CSRF tokens from forms."""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import urlencode

import redis
from conftest import GOLDEN

from pyresqueworker.client._client import Client
from pyresqueworker.protocol import wire
from pyresqueworker.web.app import SESSION_COOKIE, Dashboard
from pyresqueworker.web.security import LOOPBACK_NAMES
from pyresqueworker.web.server import make_server

#: The Ruby worker id and failures written by real Ruby Resque (tests/golden/worker-state.json).
RUBY_WORKER = "vm:30579:high,low"
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"


def seed_ruby_golden(r: redis.Redis, now: Optional[float] = None) -> list[bytes]:
    """Write the keys a real Ruby worker left (worker working on ``RubySlow``, two failures).

    The heartbeat is refreshed to ``now`` in Ruby's format, so no Python prune treats the Ruby
    worker as dead; stats are added to what is there. Returns the Ruby failure entries' bytes.
    """
    golden = json.loads((GOLDEN / "worker-state.json").read_text())
    failures: list[bytes] = []
    for key, spec in golden.items():
        kind, value = spec["type"], spec["value"]
        if key.endswith("pruning_dead_workers_in_progress"):
            continue
        if key.startswith("resque:stat:"):
            r.incrby(key, int(value))
        elif kind == "list":
            r.rpush(key, *value)
            failures = [item.encode() for item in value]
        elif kind == "set":
            r.sadd(key, *value)
        elif kind == "hash":
            r.hset(key, mapping={field: wire.heartbeat_value(int(now or time.time()))
                                 for field in value})
        else:
            r.set(key, value)
    return failures


def hostile_failure(now: Optional[float] = None) -> str:
    """A failure entry whose every text field tries to inject markup."""
    return wire.failure_entry(
        failed_at_text=wire.failed_at(now),
        payload={"class": XSS_SCRIPT, "args": [XSS_IMG, {"html": "</pre><b>bold</b>"}]},
        exception="Evil<Error>",
        error=f"message {XSS_SCRIPT}",
        backtrace=[f"app/{XSS_IMG}.py:1:in `x'"],
        worker="host:1:<q>",
        queue="hostile",
    )


class WsgiClient:
    """Calls a WSGI app in-process; keeps the session cookie like a browser."""

    def __init__(self, app: Any, host: str = "127.0.0.1:5040") -> None:
        self.app = app
        self.host = host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: Optional[dict[str, Any]] = None,
                headers: Optional[dict[str, str]] = None) -> tuple[str, dict[str, str], str]:
        body = urlencode(form or {}).encode() if form is not None else b""
        path_only, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path_only, "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5040", "HTTP_HOST": self.host,
            "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "wsgi.url_scheme": "http",
        }
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        captured: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
            captured["status"] = status
            captured["headers"] = response_headers

        text = b"".join(self.app(environ, start_response)).decode("utf-8")
        header_map: dict[str, str] = {}
        for name, value in captured["headers"]:
            if name == "Set-Cookie":
                cookie_name, _, rest = value.partition("=")
                self.cookies[cookie_name] = rest.split(";", 1)[0]
            header_map[name] = value
        return captured["status"], header_map, text

    def get(self, path: str, **kw: Any) -> tuple[str, dict[str, str], str]:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict[str, Any],
             **kw: Any) -> tuple[str, dict[str, str], str]:
        return self.request("POST", path, form=form, **kw)

    def token(self, page: str = "/") -> str:
        """The CSRF token of this session (loads ``page`` to get the cookie and a form)."""
        _, _, body = self.get(page)
        match = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
        assert match, "the page carries no CSRF field"
        assert SESSION_COOKIE in self.cookies
        return match.group(1)

    def form_fields(self, body: str, button_id: str) -> dict[str, str]:
        """The hidden fields of the form holding the button with ``id=button_id``."""
        for form in re.findall(r"<form .*?</form>", body, re.S):
            if f'id="{button_id}"' in form:
                fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form)
                return {name: html.unescape(value) for name, value in fields}
        raise AssertionError(f"no form with button {button_id}")


@contextlib.contextmanager
def running_dashboard(client: Client) -> Iterator[str]:
    """The dashboard on a free loopback port, configured as ``serve`` does; yields its URL."""
    server = make_server(Dashboard(client, allowed_hosts=LOOPBACK_NAMES), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
