"""The dashboard's request checks: basic auth, CSRF tokens, Origin/Referer and Host checks.

All secret comparisons use :func:`hmac.compare_digest`, so their timing does not reveal how
much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Optional
from urllib.parse import urlsplit

__all__ = [
    "LOOPBACK_NAMES",
    "BasicAuth",
    "CsrfTokens",
    "host_allowed",
    "is_loopback_host",
    "new_session_id",
    "parse_cookies",
    "same_origin",
]

#: Host names a browser uses for a dashboard bound to a loopback address. Accepting only these
#: defeats DNS rebinding (a page on ``evil.example`` re-pointed at 127.0.0.1).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class BasicAuth:
    """HTTP basic auth against one username and password."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode("utf-8")
        self._password = password.encode("utf-8")

    def check(self, header: Optional[str]) -> bool:
        """Whether an ``Authorization`` header carries the right credentials."""
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        username, sep, password = decoded.partition(b":")
        if not sep:
            return False
        # Both compares always run, so a right username is not told apart by timing.
        user_ok = hmac.compare_digest(username, self._username)
        password_ok = hmac.compare_digest(password, self._password)
        return user_ok and password_ok


class CsrfTokens:
    """Signed double-submit tokens: the token is ``HMAC(secret, session id)``.

    The session id lives in an HttpOnly, SameSite=Strict cookie; the token is put in a hidden
    field of every form. Another site can neither read the token (same-origin policy) nor
    compute it (it lacks the per-process secret).
    """

    def __init__(self, secret: Optional[bytes] = None) -> None:
        self._secret = secret if secret else secrets.token_bytes(32)

    def token(self, session_id: str) -> str:
        """The token forms carry for ``session_id``."""
        message = b"pyresque-web-csrf:" + session_id.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def valid(self, session_id: Optional[str], token: Optional[str]) -> bool:
        """Whether ``token`` was issued for ``session_id``."""
        if not session_id or not token:
            return False
        expected = self.token(session_id).encode("ascii")
        return hmac.compare_digest(expected, token.encode("utf-8", "replace"))


def new_session_id() -> str:
    """A fresh random session id (cookie value)."""
    return secrets.token_urlsafe(24)


def parse_cookies(header: Optional[str]) -> dict[str, str]:
    """``Cookie`` header to a dict; malformed pieces are skipped."""
    cookies: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def _host_name(host_header: str) -> str:
    """The host part of a ``Host`` header, without port or IPv6 brackets, lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def host_allowed(environ: Mapping[str, Any], allowed: Optional[Iterable[str]]) -> bool:
    """Whether the request's ``Host`` is one of ``allowed`` names (any when ``None``)."""
    if allowed is None:
        return True
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or ""
    return _host_name(str(host)) in set(allowed)


def same_origin(environ: Mapping[str, Any]) -> bool:
    """Whether ``Origin`` (or, without it, ``Referer``) names this dashboard, when present.

    Browsers send ``Origin`` on every cross-site POST; a request that carries neither header
    (curl, old clients) is left to the CSRF token alone.
    """
    host = str(environ.get("HTTP_HOST") or "").strip().lower()
    origin = environ.get("HTTP_ORIGIN")
    source = origin if origin is not None else environ.get("HTTP_REFERER")
    if source is None:
        return True
    source = str(source).strip()
    if source == "null" or not host:
        return False
    try:
        parts = urlsplit(source)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host


def is_loopback_host(host: str) -> bool:
    """Whether a listen address is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
