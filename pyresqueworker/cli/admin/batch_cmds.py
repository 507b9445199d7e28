"""``pyresque batches [ID]``: the batches (groups of jobs with callbacks) and where they stand.

A batch's members are job ids, or ``batch:<id>`` for a child batch. For a job member the
detail adds what the job's record says now (its class, queued, running, ...). The batch itself
counts a member pending until the job has finished for good (retries included).
"""

from __future__ import annotations

from typing import Any, Optional

import click

from ...protocol import wire
from . import views
from .context import AdminContext, AdminError, admin_command
from .render import (
    echo_json,
    format_age,
    format_duration,
    format_number,
    key_values,
    table,
    terminal_width,
)

__all__ = ["batches"]


@click.command()
@click.argument("batch_id", metavar="[ID]", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0),
              help="Batches to list, newest first; with ID: members to show, unfinished "
                   "first (0: all).")
@admin_command
def batches(admin: AdminContext, batch_id: Optional[str], limit: int) -> None:
    """Recent batches with their progress; with ID, one batch in full: counts, callbacks,
    members and what it still waits for."""
    if batch_id is not None:
        _show(admin, batch_id, limit)
        return
    rows = [views.batch_row(status) for status in admin.client.batches(limit or 1_000_000)]
    if admin.as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no batches")
        return
    now = admin.now()
    click.echo(table(
        ["ID", "CREATED", "PROGRESS", "TOTAL", "PENDING", "SUCCEEDED", "FAILED", "STATE",
         "DESCRIPTION"],
        [[row["id"], format_age(row["created_at"], now), f"{row['percent']}%",
          format_number(row["total"]), format_number(row["pending"]),
          format_number(row["succeeded"]), format_number(row["failed"]), _state(row),
          row["description"] or "-"] for row in rows],
        right=(2, 3, 4, 5, 6), width=terminal_width(), shrink_first=(8, 0)))


def _state(row: dict[str, Any]) -> str:
    return "complete" if row["complete"] else "running"


def _callback(row: dict[str, Any], name: str) -> str:
    callback = row[name]
    if callback is None:
        return "-"
    call = f"{callback['class']}({wire.dumps(callback['args'])[1:-1]})"
    if not row["complete"]:
        return f"{call}  (when the batch completes)"
    if name == "on_success" and row["failed"]:
        return f"{call}  (not enqueued: a member failed)"
    return f"{call}  (enqueued to {row['queue'] or '?'})"


def _show(admin: AdminContext, batch_id: str, limit: int) -> None:
    now = admin.now()
    detail = views.batch_detail(admin.client, batch_id, limit)
    if detail is None:
        raise AdminError(f"there is no batch {batch_id!r} (never made, or expired: a "
                         "completed batch is kept for a day); `pyresque batches` lists them")
    if admin.as_json:
        echo_json(detail)
        return
    finished = detail["total"] - detail["pending"]
    completed = detail["completed_at"]
    click.echo(key_values([
        ("batch", detail["id"]),
        ("description", detail["description"] or "-"),
        ("state", f"{_state(detail)}, {finished:,} of {detail['total']:,} "
                  f"finished ({detail['percent']}%)"),
        ("total", format_number(detail["total"])),
        ("pending", format_number(detail["pending"])),
        ("succeeded", format_number(detail["succeeded"])),
        ("failed", format_number(detail["failed"])),
        ("created", f"{format_age(detail['created_at'], now)} "
                    f"({wire.iso_utc(detail['created_at'])})"),
        ("completed", "-" if completed is None else
         f"{format_age(completed, now)} ({wire.iso_utc(completed)}), after "
         f"{format_duration(completed - detail['created_at'])}"),
        ("parent", detail["parent"] or "-"),
        ("queue", detail["queue"] or "-"),
        ("on_success", _callback(detail, "on_success")),
        ("on_complete", _callback(detail, "on_complete")),
    ]))
    if detail["waiting_total"]:
        click.echo(f"\nwaiting for {detail['waiting_total']:,}:")
        click.echo(table(["MEMBER", "CLASS", "JOB STATE"],
                         [[_member(row), row["class"] or _no_class(row), row["job_state"] or "-"]
                          for row in detail["waiting_for"]], width=terminal_width()))
        _more(len(detail["waiting_for"]), detail["waiting_total"])
    if detail["members"]:
        click.echo(f"\nmembers ({detail['members_total']:,}):")
        click.echo(table(["MEMBER", "CLASS", "QUEUE", "STATE", "JOB STATE"],
                         [[_member(row), row["class"] or _no_class(row), row["queue"] or "-",
                           row["state"], row["job_state"] or "-"] for row in detail["members"]],
                         width=terminal_width()))
        _more(len(detail["members"]), detail["members_total"])
    else:
        click.echo("\nno members")


def _member(row: dict[str, Any]) -> str:
    return f"batch {row['id']}" if row["kind"] == "batch" else str(row["id"])


def _no_class(row: dict[str, Any]) -> str:
    return "(child batch)" if row["kind"] == "batch" else "(record expired)"


def _more(shown: int, total: int) -> None:
    if shown < total:
        click.echo(f"  ... {total - shown:,} more (--limit 0 shows all)")
