"""``pyresque failed ...``: the failed list, read and edited as resque-web does.

A failure's id is its absolute index in the list (0 = oldest), the number resque-web puts in its
URLs, so ids shown by ``failed list`` work in resque-web and the other way round. Retrying
leaves the entry in place (marked ``retried_at``); removing shifts the entries after it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Optional

import click

from ...client.failed_queue import (
    FailedEntryError,
    FailedQueueBusyError,
    FailureFilter,
    decode_entry,
)
from ...jobs.activejob import job_class
from ...protocol import wire
from . import views
from .context import AdminContext, AdminError, admin_command
from .proctitle import hide_password_from_ps
from .render import (
    ProgressLine,
    echo_json,
    format_age,
    format_number,
    key_values,
    table,
    terminal_width,
)

__all__ = ["failed"]

_INDEX = click.IntRange(0)
_RANGE_MARK = ".."
_INDEX_SPEC = re.compile(r"(?P<first>[0-9]+)(?:\.\.(?P<last>[0-9]+))?")


@click.group()
def failed() -> None:
    """The failed list (ids are list indexes, 0 = oldest, as in resque-web)."""


def _indexes(admin: AdminContext, texts: Sequence[str]) -> list[int]:
    """Failure indexes given as ``INDEX`` or ``FIRST..LAST`` (both included, as in Ruby), in
    the order given. A range stops at the end of the list, so ``0..999999`` means "all"; a
    range that starts past the end stands for its first index (reported as missing)."""
    numbers: list[int] = []
    total: Optional[int] = None
    for text in texts:
        match = _INDEX_SPEC.fullmatch(text.strip())
        if match is None or (match["last"] is not None
                             and int(match["last"]) < int(match["first"])):
            raise click.BadParameter(
                f"{text!r} is not a failure index: expected an index as `failed list` shows "
                f"them, e.g. 0 (the oldest), or a range such as 0..9; "
                f"{_how_many(admin.client.failed_count())}", param_hint="'INDEX'")
        first = int(match["first"])
        if match["last"] is None:
            numbers.append(first)
            continue
        if total is None:
            total = admin.client.failed_count()
        last = min(int(match["last"]), total - 1)
        numbers += range(first, last + 1) if last >= first else [first]
    return numbers


def _how_many(total: int) -> str:
    if total == 0:
        return "the failed list is empty"
    if total == 1:
        return "there is 1 failure (index 0)"
    return f"there are {total:,} failures (indexes 0..{total - 1})"


def _first_line(value: Any) -> str:
    return str(value).split("\n", 1)[0] if value is not None else ""


@failed.command("list")
@click.option("--queue", "-q", help="Only failures from this queue.")
@click.option("--class", "class_name", help="Only this job class (ActiveJob: its job class).")
@click.option("--start", type=_INDEX, default=None,
              help="List from this index on (default: the newest failures).")
@click.option("--count", "-n", type=_INDEX, default=20, show_default=True,
              help="Most failures to list (0: all).")
@admin_command
def failed_list(admin: AdminContext, queue: Optional[str], class_name: Optional[str],
                start: Optional[int], count: int) -> None:
    """List failures by index: the newest by default, or from --start on."""
    rows, total = views.find_failures(admin.client, FailureFilter(queue, class_name),
                                      start=start, count=count)
    if admin.as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no failures" if not total else f"no matching failures (of {total:,})")
        return
    now = admin.now()
    click.echo(table(
        ["INDEX", "FAILED", "QUEUE", "CLASS", "EXCEPTION", "ERROR", "RETRIED"],
        [[row["index"], format_age(wire.parse_time(row["failed_at"]), now), row["queue"],
          row["class"], row["exception"], _first_line(row["error"]),
          format_age(wire.parse_time(row["retried_at"]), now) if row["retried_at"] else ""]
         if row["valid"] else
         [row["index"], "-", "-", "-", "(could not be parsed)", row["raw"], ""]
         for row in rows],
        right=(0,), width=terminal_width(), shrink_first=(5,)))
    click.echo(f"{len(rows):,} shown, indexes {rows[0]['index']}-{rows[-1]['index']} of "
               f"{total:,} failures (--start/--count for more; `failed show INDEX` for one)")


@failed.command("show")
@click.argument("index", metavar="INDEX")
@admin_command
def failed_show(admin: AdminContext, index: str) -> None:
    """Show failure INDEX in full, backtrace included (FIRST..LAST: each of a range)."""
    details = []
    for number in _indexes(admin, [index]):
        raw = admin.client.failed_queue.raw(number)
        if raw is None:
            raise AdminError(f"there is no failure at index {number}")
        details.append(views.failure_detail(number, raw))
    if admin.as_json:
        echo_json(details if _RANGE_MARK in index else details[0])
        return
    now = admin.now()
    click.echo("\n\n".join(_detail_text(detail, now) for detail in details))


def _detail_text(detail: dict[str, Any], now: float) -> str:
    entry = detail["entry"]
    if entry is None:
        return key_values([("index", detail["index"]), ("entry", "(could not be parsed)"),
                           ("raw", detail["raw"])])
    payload = entry.get("payload")
    backtrace = entry.get("backtrace")
    lines = "\n".join(str(line) for line in backtrace) if isinstance(backtrace, list) else "-"
    # Only entries our worker's retries gave up on carry it; Ruby's never do.
    attempts = [("attempts", entry["attempts"])] if "attempts" in entry else []
    return key_values([
        ("index", detail["index"]),
        ("failed_at", _with_age(entry.get("failed_at"), now)),
        ("retried_at", _with_age(entry.get("retried_at"), now)),
        ("queue", entry.get("queue")),
        ("worker", entry.get("worker")),
        ("class", job_class(payload)),
        ("payload", wire.dumps(payload) if payload is not None else "-"),
        *attempts,
        ("exception", entry.get("exception")),
        ("error", entry.get("error")),
        ("backtrace", lines or "-"),
    ])


def _with_age(value: Any, now: float) -> str:
    if value is None:
        return "-"
    moment = wire.parse_time(value)
    return f"{value} ({format_age(moment, now)})" if moment is not None else str(value)


@failed.command("retry")
@click.argument("indexes", nargs=-1, required=True, metavar="INDEX...")
@admin_command
def failed_retry(admin: AdminContext, indexes: tuple[str, ...]) -> None:
    """Retry failures by index (or FIRST..LAST), as resque-web's Retry: the job is enqueued
    again (class and args) and the entry stays, marked retried."""
    done, errors = [], []
    for index in dict.fromkeys(_indexes(admin, indexes)):
        entry = decode_entry(admin.client.failed_queue.raw(index))
        try:
            retried_at = admin.client.requeue(index)
        except (IndexError, FailedEntryError, FailedQueueBusyError) as exc:
            errors.append({"index": index, "error": str(exc)})
            continue
        entry = entry or {}
        done.append({"index": index, "retried_at": retried_at, "queue": entry.get("queue"),
                     "class": job_class(entry.get("payload"))})
    _report(admin, "retried", done, errors,
            lambda row: f"retried {row['index']}: {row['class']} to {row['queue']}")


@failed.command("remove")
@click.argument("indexes", nargs=-1, required=True, metavar="INDEX...")
@admin_command
def failed_remove(admin: AdminContext, indexes: tuple[str, ...]) -> None:
    """Remove failures by index or FIRST..LAST (all refer to the list as it is now)."""
    wanted = _indexes(admin, indexes)
    removed = admin.client.failed_queue.remove_many(wanted)
    done = [views.failure_row(index, raw) for index, raw in removed]
    gone = {row["index"] for row in done}
    errors = [{"index": index, "error": f"there is no failure at index {index}"}
              for index in dict.fromkeys(wanted) if index not in gone]
    _report(admin, "removed", done, errors, _removed_line)


def _removed_line(row: dict[str, Any]) -> str:
    if not row["valid"]:
        return f"removed {row['index']} (could not be parsed)"
    # Any client may have written the entry: a field can be missing or null.
    return (f"removed {row['index']}: {row['class'] or '(no class)'} from "
            f"{row['queue'] or '(no queue)'}, {row['exception'] or '(no exception)'}")


def _report(admin: AdminContext, verb: str, done: list[dict[str, Any]],
            errors: list[dict[str, Any]], describe: Any) -> None:
    if admin.as_json:
        echo_json({verb: done, "errors": errors})
    else:
        for row in done:
            click.echo(describe(row))
        for error in errors:
            click.echo(f"pyresque: error: {error['error']}", err=True)
    if errors:
        click.get_current_context().exit(1)


@failed.command("retry-all")
@click.option("--queue", "-q", help="Only failures from this queue.")
@click.option("--class", "class_name", help="Only this job class (ActiveJob: its job class).")
@click.option("--skip-retried", is_flag=True,
              help="Leave out failures already retried (e.g. to resume an interrupted run).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="Entries read and requeued per round trip (Redis is busy about 3 µs per "
                   "entry of a batch).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress line on stderr  [default: when stderr is a terminal]")
@admin_command
def failed_retry_all(admin: AdminContext, queue: Optional[str], class_name: Optional[str],
                     skip_retried: bool, batch_size: int, progress: Optional[bool]) -> None:
    """Retry every failure (or those of --queue / --class), in batches.

    Entries stay in the list, marked retried, as resque-web's Retry All leaves them; failures
    that arrive meanwhile are left for the next run.
    """
    wanted = FailureFilter(queue, class_name, skip_retried)
    line = ProgressLine("examined", enabled=progress)
    seen = [0, admin.client.failed_count()]
    hide_password_from_ps(admin, "failed", "retry-all")  # it may run for minutes

    def report(done: int, total: int) -> None:
        seen[:] = [done, total]
        line(done, total)

    try:
        requeued = admin.client.requeue_matching(
            None if wanted == FailureFilter() else wanted, batch_size=batch_size,
            progress=report)
    except KeyboardInterrupt:
        line.finish()
        click.echo(f"pyresque: interrupted after examining {seen[0]:,} of {seen[1]:,} "
                   "failures; those retried are marked (--skip-retried resumes without "
                   "repeating them)", err=True)
        click.get_current_context().exit(130)
    finally:
        line.finish()  # an error message must not land on the progress line
    if admin.as_json:
        echo_json({"requeued": requeued, "examined": seen[0]})
    else:
        click.echo(f"requeued {format_number(requeued)} of {format_number(seen[0])} failures "
                   "examined")


@failed.command("clear")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@admin_command
def failed_clear(admin: AdminContext, yes: bool) -> None:
    """Delete the whole failed list (asks first unless --yes)."""
    count = admin.client.failed_count()
    if count and not yes:
        try:
            confirmed = click.confirm(f"Delete all {count:,} failures?", err=True)
        except click.Abort:
            confirmed = False
        if not confirmed:
            raise AdminError("nothing deleted (answer y, or pass --yes)")
    cleared = admin.client.clear_failed()
    if admin.as_json:
        echo_json({"cleared": cleared})
    else:
        click.echo(f"deleted {format_number(cleared)} failures")


@failed.command("clear-retried")
@admin_command
def failed_clear_retried(admin: AdminContext) -> None:
    """Remove every failure that was retried (resque-web's Clear Retried)."""
    removed = admin.client.clear_retried()
    if admin.as_json:
        echo_json({"removed": removed})
    else:
        click.echo(f"removed {format_number(removed)} retried failures")
