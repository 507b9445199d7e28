"""The Django app config: add ``"pyresqueworker.contrib.django"`` to ``INSTALLED_APPS``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed

from .conf import SETTING, reset_client

__all__ = ["PyresqueConfig"]


class PyresqueConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Imports each installed app's ``jobs`` module, so its ``@job`` handlers are registered in
    every process: the worker runs them, and a web process's ``enqueue`` finds their queues."""

    name = "pyresqueworker.contrib.django"
    label = "pyresqueworker"
    verbose_name = "pyresqueworker"

    def ready(self) -> None:
        from . import autodiscover

        autodiscover()
        setting_changed.connect(_setting_changed, dispatch_uid="pyresqueworker.reset_client")


def _setting_changed(*, setting: str, **_kwargs: object) -> None:
    if setting == SETTING:
        reset_client()
