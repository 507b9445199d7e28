"""``manage.py pyresque_work``: ``pyresque-work`` inside a Django project.

Takes every ``pyresque-work`` flag (derived from the click command, see
:mod:`~pyresqueworker.contrib.django.command_line`), with ``settings.PYRESQUE`` as the
defaults. The installed apps' ``jobs`` modules are already imported (the app config's
``ready()``), and every job runs between database connection clean-ups.
"""

from __future__ import annotations

import argparse
from typing import Any

import click
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from pyresqueworker.cli.work import work
from pyresqueworker.contrib.django import db
from pyresqueworker.contrib.django.command_line import add_click_options, click_argv
from pyresqueworker.contrib.django.conf import worker_defaults
from pyresqueworker.jobs.registry import default_registry
from pyresqueworker.protocol.connection import ConfigError
from pyresqueworker.worker.runner import WorkerError

PROG = "manage.py pyresque_work"


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = ("Work Resque jobs from Redis with this project's handlers. Each option is taken "
            "from the command line, else its environment variable, else settings.PYRESQUE, "
            "else the default shown.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_click_options(parser, work)

    def handle(self, *args: Any, **options: Any) -> None:
        argv = click_argv(work, options)
        try:
            defaults = worker_defaults()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=2) from None
        db.install(default_registry)
        # Forked worker processes (--processes, --fork-per-job) must not share a socket.
        connections.close_all()
        try:
            code = work.main(args=argv, prog_name=PROG, standalone_mode=False,
                             default_map=defaults)
        except click.exceptions.Abort:
            raise CommandError("aborted", returncode=130) from None
        except click.ClickException as exc:  # a bad flag or setting: usage error, as the CLI
            raise CommandError(exc.format_message(), returncode=exc.exit_code) from None
        except WorkerError as exc:  # Redis unreachable, an --app that fails to import...
            raise CommandError(str(exc), returncode=1) from None
        except (ValueError, ConfigError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        if isinstance(code, int) and code:
            raise CommandError(f"the worker exited with status {code}", returncode=code)
