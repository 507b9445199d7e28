"""``pyresque-work``'s click options as argparse arguments of a Django management command.

Derived from the click command when the parser is built, never declared twice: a flag added
to ``pyresque-work`` appears in ``manage.py pyresque_work`` (and ``call_command``) at once.
The argparse side only collects what was given (``None`` when absent); :func:`click_argv`
turns that back into click arguments, so click alone parses, validates, reads environment
variables and applies defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import click

from .conf import worker_options

__all__ = ["add_click_options", "click_argv"]


def _long_flag(flags: list[str]) -> str:
    return next((flag for flag in flags if flag.startswith("--")), flags[0])


def _help(option: click.Option, context: click.Context) -> str:
    text = option.help or ""
    default = option.get_default(context, call=False)
    # Scalars only: a missing default is None, or a sentinel object in newer click.
    if (option.show_default is not False and isinstance(default, (str, int, float))
            and default is not False and "[default:" not in text):
        text += f"  [default: {default}]"
    if option.envvar:
        names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar)
        text += f"  [env: {', '.join(names)}]"
    return text.replace("%", "%%")  # argparse formats help with %


def add_click_options(parser: argparse.ArgumentParser, command: click.Command) -> None:
    """Add every value-carrying option of ``command`` to ``parser`` (dest: its Python name)."""
    context = click.Context(command)
    for name, option in worker_options(command).items():
        common: dict[str, Any] = {"dest": name, "default": None,
                                  "help": _help(option, context)}
        if option.is_flag and option.secondary_opts:  # --periodic/--no-periodic
            parser.add_argument(*option.opts, action="store_const", const=True, **common)
            parser.add_argument(*option.secondary_opts, action="store_const", const=False,
                                dest=name, default=None, help=f"Turn {option.opts[0]} off.")
        elif option.is_flag:
            parser.add_argument(*option.opts, action="store_const", const=True, **common)
        else:
            choices = option.type.choices if isinstance(option.type, click.Choice) else None
            metavar = ("{" + ",".join(map(str, choices)) + "}" if choices
                       else option.metavar or option.type.name.split()[0].upper())
            parser.add_argument(*option.opts, action="append" if option.multiple else "store",
                                metavar=metavar, **common)


def click_argv(command: click.Command, options: Mapping[str, Any]) -> list[str]:
    """The click arguments for the options that were given (``options`` by Python name)."""
    argv: list[str] = []
    for name, option in worker_options(command).items():
        value = options.get(name)
        if value is None:
            continue
        if option.is_flag:
            if value:
                argv.append(_long_flag(option.opts))
            elif option.secondary_opts:
                argv.append(_long_flag(option.secondary_opts))
        elif option.multiple:
            for item in [value] if isinstance(value, str) else value:
                argv += [_long_flag(option.opts), str(item)]
        else:
            argv += [_long_flag(option.opts), str(value)]
    return argv
