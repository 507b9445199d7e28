"""Keep the Redis password out of ``ps`` for the long-running ``pyresque`` commands.

``pyresque --redis redis://:secret@host/0 web`` would show the password in its command line for
as long as the dashboard runs; like the worker, such a command replaces its process title with
one that names the URL with the password hidden.
"""

from __future__ import annotations

from ...protocol.connection import redact_url, resolve_url
from ...worker._housekeeping import set_proctitle
from .context import PROG, AdminContext

__all__ = ["hide_password_from_ps"]


def hide_password_from_ps(admin: AdminContext, *words: str) -> None:
    """Set the process title to ``pyresque WORDS URL`` (``pyresque web 127.0.0.1:5040
    redis://:***@host:6379/0``) when the Redis URL in use holds a password.

    Call it once the first Redis round trip succeeded: a command that fails at once leaves
    nothing to hide, and a program (or test) that runs the command in-process keeps its own
    title unless there is a password to hide.
    """
    url = resolve_url(admin.redis_url)
    shown = redact_url(url)
    if shown != url:
        set_proctitle(" ".join((PROG, *words, shown)))
    admin.warn_of_password_in_ps()  # now, not when the command ends (it may run for hours)
