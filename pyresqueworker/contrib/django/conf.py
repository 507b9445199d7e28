"""``settings.PYRESQUE``: one dict for the worker command and the client.

Keys are ``pyresque-work`` options, by flag (``"job-timeout"``, ``"max-memory"``) or by
Python name (``"job_timeout"``, ``"max_memory_mb"``); ``"url"`` is ``--redis`` too. Values are
what the flag takes; ``queues`` may also be a list (``["high", "low"]``, strict order) or a
dict of weights (``{"high": 2, "low": 1}``), ``apps`` a list. For the worker they are
defaults: a flag given to ``manage.py pyresque_work`` wins, then the flag's environment
variable, then the setting.
The client (:func:`get_client`) reads ``--redis``, ``--namespace`` and the TLS files the same
way, so the web process and the worker always meet on one Redis.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Optional

import click
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ...cli.work import work
from ...client._client import Client
from ...protocol.connection import TLSFiles, connect
from ...protocol.wire import DEFAULT_NAMESPACE

__all__ = ["SETTING", "get_client", "pyresque_settings", "reset_client", "worker_defaults",
           "worker_options"]

SETTING = "PYRESQUE"
_ALIASES = {"url": "redis_url"}
_CLIENT_OPTIONS = ("redis_url", "namespace", "tls_ca", "tls_cert", "tls_key")

_client: Optional[Client] = None
_client_lock = threading.Lock()


def worker_options(command: click.Command = work) -> dict[str, click.Option]:
    """The command's options that carry a value, by Python name (``--help``/``--version`` are
    not settings)."""
    return {param.name: param for param in command.params
            if isinstance(param, click.Option) and param.expose_value and param.name}


def pyresque_settings() -> dict[str, Any]:
    """``settings.PYRESQUE`` with every key as its option's Python name; raises
    ``ImproperlyConfigured`` for a value that is not a dict or a key that is no option."""
    raw = getattr(settings, SETTING, None) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, not {type(raw).__name__}")
    names = dict(_ALIASES)  # a flag's name (max_memory) or its Python name (max_memory_mb)
    for name, option in worker_options().items():
        names[name] = name
        names.update((flag[2:].replace("-", "_"), name) for flag in option.opts
                     if flag.startswith("--"))
    found: dict[str, Any] = {}
    for key, value in raw.items():
        option_name = names.get(str(key).lstrip("-").replace("-", "_"))
        if option_name is None:
            raise ImproperlyConfigured(
                f"settings.{SETTING}[{key!r}] is not an option of pyresque_work; known: "
                + ", ".join(sorted(_flag_names())))
        found[option_name] = value
    return found


def _flag_names() -> set[str]:
    return {flag[2:] for option in worker_options().values() for flag in option.opts
            if flag.startswith("--")}


def worker_defaults() -> dict[str, Any]:
    """The settings as a click ``default_map`` for ``pyresque-work``."""
    defaults = pyresque_settings()
    queues = defaults.get("queues")
    if isinstance(queues, Mapping):
        defaults["queues"] = ",".join(f"{name}={weight}" for name, weight in queues.items())
    elif isinstance(queues, (list, tuple)):
        defaults["queues"] = ",".join(str(name) for name in queues)
    if isinstance(defaults.get("apps"), str):
        defaults["apps"] = [defaults["apps"]]
    return defaults


def _resolved(name: str, defaults: Mapping[str, Any]) -> Optional[str]:
    """An option's value as the worker would resolve it without flags: its environment
    variables (first set wins), then the setting."""
    envvar = worker_options()[name].envvar
    for variable in [envvar] if isinstance(envvar, str) else list(envvar or ()):
        if os.environ.get(variable):
            return os.environ[variable]
    value = defaults.get(name)
    return None if value is None else str(value)


def get_client() -> Client:
    """The process's :class:`~pyresqueworker.Client`, built from ``settings.PYRESQUE`` on
    first use (thread-safe; redis-py's pool is shared by every thread)."""
    global _client
    with _client_lock:
        if _client is None:
            defaults = pyresque_settings()
            url, namespace, ca, cert, key = (_resolved(name, defaults)
                                             for name in _CLIENT_OPTIONS)
            tls = TLSFiles(ca, cert, key)
            conn = connect(url, tls=tls if tls.options() else None)
            _client = Client(conn, namespace=namespace or DEFAULT_NAMESPACE)
        return _client


def reset_client(**_signal: Any) -> None:
    """Forget the client (``settings.PYRESQUE`` changed, e.g. ``override_settings``)."""
    global _client
    with _client_lock:
        old, _client = _client, None
    if old is not None:
        old.redis.close()
