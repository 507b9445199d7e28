"""``pyresque``: inspect and manage Resque queues, workers, failures and schedules.

Each command parses its arguments, calls the :class:`~pyresqueworker.Client` API and
renders the answer: a table on a terminal, JSON with ``--json``. The failed-list commands are in
:mod:`.failed_cmds`, batches in :mod:`.batch_cmds`, schedules, history and the dashboard in
:mod:`.extra_cmds`.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

import click

from ..._version import __version__
from ...protocol import wire
from ...protocol.failure import PRUNE_DIRTY_EXIT
from ...protocol.queues import closest_queue
from ...worker._prune import Pruner
from .._options import connection_options, tls_files
from . import views
from .batch_cmds import batches
from .context import AdminContext, AdminError, AdminGroup, admin_command, json_array, json_option
from .extra_cmds import history, schedules, web
from .failed_cmds import failed
from .render import (
    echo_json,
    format_age,
    format_duration,
    format_number,
    key_values,
    table,
    terminal_width,
)

__all__ = ["main"]

ALL_PAUSED = "all workers are paused (pause-all-workers); `pyresque unpause` resumes them"


@click.group("pyresque", cls=AdminGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Connection options may also follow the subcommand. Every command takes "
                    "--json. Docs: docs/cli.md (the 'Admin CLI' page).")
@connection_options()
@json_option
@click.version_option(__version__, "--version", prog_name="pyresqueworker")
@click.pass_context
def main(ctx: click.Context, redis_url: Optional[str], tls_ca: Optional[str],
         tls_cert: Optional[str], tls_key: Optional[str], namespace: str, as_json: bool) -> None:
    """Inspect and manage Resque queues, workers and failures (Ruby's and Python's alike)."""
    admin = AdminContext(redis_url, tls_files(tls_ca, tls_cert, tls_key), namespace, as_json)
    ctx.obj = admin
    ctx.call_on_close(admin.close)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


main.add_command(failed)
main.add_command(batches)
main.add_command(schedules)
main.add_command(history)
main.add_command(web)


@main.command()
@admin_command
def info(admin: AdminContext) -> None:
    """Totals: pending, processed, failed, queues, workers, delayed, pauses."""
    data = views.info(admin.client)
    if admin.as_json:
        echo_json(data)
        return
    paused = ("all workers (pause-all-workers)" if data["all_paused"]
              else ", ".join(data["paused_queues"]) or "no")
    click.echo(key_values([
        ("pending", format_number(data["pending"])),
        ("processed", format_number(data["processed"])),
        ("failed", format_number(data["failed"])),
        ("queues", format_number(data["queues"])),
        ("workers", f"{format_number(data['workers'])} ({data['working']} working)"),
        ("delayed", format_number(data["delayed"])),
        ("paused", paused),
        ("namespace", data["namespace"]),
        ("servers", ", ".join(data["servers"])),
        ("environment", data["environment"]),
    ]))


@main.command()
@admin_command
def queues(admin: AdminContext) -> None:
    """Queues with their size, pause and latency (age of the oldest job, where known)."""
    rows = views.queue_rows(admin.client, admin.now())
    if admin.as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no queues")
        return
    click.echo(table(
        ["QUEUE", "SIZE", "PAUSED", "LATENCY"],
        [[row["name"], format_number(row["size"]), "yes" if row["paused"] else "",
          format_duration(row["latency"])] for row in rows],
        right=(1, 3), width=terminal_width()))
    if rows[0]["all_paused"]:
        click.echo(ALL_PAUSED)


@main.command()
@admin_command
def workers(admin: AdminContext) -> None:
    """Registered workers: state (working, idle, or paused by pause-all-workers or USR2), the
    job each runs and for how long, heartbeat age."""
    rows = views.worker_rows(admin.client)
    if admin.as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no workers")
        return
    now = admin.now()
    lines = []
    for row in rows:
        job = row["job"] or {}
        run_at = wire.parse_time(job.get("run_at"))
        lines.append([
            row["id"], row["host"], row["pid"], ",".join(row["queues"]), row["state"],
            job.get("class") or "", job.get("queue") or "",
            format_duration(now - run_at) if run_at is not None else "",
            format_age(wire.parse_time(row["heartbeat"]), now),
        ])
    click.echo(table(["WORKER", "HOST", "PID", "QUEUES", "STATE", "JOB", "FROM", "RUNNING",
                      "HEARTBEAT"], lines, right=(2, 7), width=terminal_width(),
                     shrink_first=(0,)))
    if admin.client.all_paused():  # why every worker says "paused"
        click.echo(ALL_PAUSED)


@main.command()
@click.argument("class_name", metavar="CLASS")
@click.argument("args_json", metavar="[ARGS_JSON]", required=False, default="[]")
@click.option("--queue", "-q", required=True, help="Queue to push the job to.")
@admin_command
def enqueue(admin: AdminContext, class_name: str, args_json: str, queue: str) -> None:
    """Push a CLASS job with ARGS_JSON (a JSON array, default []) to --queue, as
    Resque.enqueue_to does."""
    args = json_array(args_json, "ARGS_JSON")
    admin.client.enqueue_to(queue, class_name, *args)
    item = wire.encode_job(class_name, args)  # (what was written: no span, no tracking here)
    if admin.as_json:
        echo_json({"queue": queue, "class": class_name, "args": args, "item": item})
    else:
        click.echo(f"enqueued to {queue}: {item}")


@main.group()
def delayed() -> None:
    """Delayed jobs (resque-scheduler's enqueue_at / enqueue_in)."""


@delayed.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(0),
              help="Timestamps to show, soonest first (0: all).")
@click.option("--items", default=3, show_default=True, type=click.IntRange(0),
              help="Jobs to show per timestamp.")
@admin_command
def delayed_list(admin: AdminContext, limit: int, items: int) -> None:
    """Scheduled timestamps with their job counts and first jobs."""
    rows = views.delayed_rows(admin.client, limit, items)
    if admin.as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no delayed jobs")
        return
    now = admin.now()
    click.echo(table(
        ["TIMESTAMP", "TIME", "DUE", "COUNT", "JOBS"],
        [[row["timestamp"], row["time"], format_age(row["timestamp"], now),
          format_number(row["count"]), _jobs_summary(row["items"], row["count"])]
         for row in rows],
        right=(3,), width=terminal_width(), shrink_first=(4,)))


def _jobs_summary(items: list[Any], count: int) -> str:
    shown = []
    for item in items:
        if isinstance(item, dict):
            args = wire.dumps(item.get("args", []))[1:-1]
            shown.append(f"{item.get('class')}({args}) on {item.get('queue')}")
        else:
            shown.append(repr(item))
    more = count - len(items)
    return "; ".join(shown) + (f"; +{more:,} more" if more > 0 and shown else "")


@main.command()
@click.argument("queue", required=False)
@click.option("--force", is_flag=True,
              help="Pause QUEUE even though it has no jobs, is not in the queues set and no "
                   "worker watches it (e.g. before its first job arrives).")
@admin_command
def pause(admin: AdminContext, queue: Optional[str], force: bool) -> None:
    """Pause QUEUE, or with no QUEUE every worker (Resque's pause-all-workers).

    A queue pause holds back this package's workers only; Ruby workers honour the global one.
    A pause that is on already is said to be, and is not an error.
    """
    client = admin.client
    if queue is None:
        changed = not client.all_paused()
        client.pause_all()
        message = ("paused all workers (pause-all-workers is set; Ruby and Python workers stop)"
                   if changed else "all workers were already paused (pause-all-workers was "
                                   "set; nothing changed)")
    else:
        # A typo ("mial") would otherwise be paused silently while "mail" runs on.
        if not force and not views.queue_is_known(client, queue):
            closest = closest_queue(queue, client.queues())
            guess = f"did you mean {closest!r}? " if closest is not None else ""
            raise AdminError(f"there is no queue {queue!r} (no jobs waiting in it, not in the "
                             f"queues set, no worker watches it); {guess}--force pauses it "
                             "anyway")
        changed = queue not in client.paused_queues()
        client.pause_queue(queue)
        message = (f"paused queue {queue} (pyresqueworker workers only; Ruby workers ignore it)"
                   if changed else f"queue {queue} was already paused (nothing changed)")
    _report_pause(admin, queue, True, changed, message)


@main.command()
@click.argument("queue", required=False)
@admin_command
def unpause(admin: AdminContext, queue: Optional[str]) -> None:
    """Resume QUEUE, or with no QUEUE lift the global pause-all-workers.

    Resuming what was not paused is said to be, and is not an error.
    """
    client = admin.client
    if queue is None:
        changed = client.all_paused()
        client.unpause_all()
        message = ("unpaused all workers (pause-all-workers removed)" if changed else
                   "workers were not paused (pause-all-workers was not set; nothing changed)")
    else:
        changed = queue in client.paused_queues()
        client.unpause_queue(queue)
        message = (f"unpaused queue {queue}" if changed
                   else f"queue {queue} was not paused (nothing changed)")
        if client.all_paused():  # the queue's jobs still wait: say why
            message += "\n" + ALL_PAUSED
    _report_pause(admin, queue, False, changed, message)


def _report_pause(admin: AdminContext, queue: Optional[str], paused: bool, changed: bool,
                  message: str) -> None:
    # ``changed`` is read just before the write: a client pausing the same queue at the same
    # moment may make both claim the change, but the state left is the one asked for.
    if admin.as_json:
        echo_json({"queue": queue, "paused": paused, "changed": changed})
    else:
        click.echo(message)


@main.command()
@click.option("--prune-after", default=300.0, show_default=True, type=click.FloatRange(1),
              help="Heartbeat age (seconds, Redis clock) after which a worker is dead.")
@click.option("--on-dead-worker", type=click.Choice(["requeue", "fail"]), default="requeue",
              show_default=True, help="A dead worker's job: back to its queue, or a failure.")
@click.option("--max-recoveries", default=3, show_default=True, type=click.IntRange(1),
              help="Recoveries of one job before it is failed as a poison pill.")
@click.option("--dry-run", is_flag=True, help="Only list the workers that would be pruned.")
@click.option("--force", is_flag=True,
              help="Check heartbeats even while another worker holds the prune lock.")
@admin_command
def prune(admin: AdminContext, prune_after: float, on_dead_worker: str, max_recoveries: int,
          dry_run: bool, force: bool) -> None:
    """Prune dead workers once, as a worker's prune does, and recover their jobs.

    Dead: a heartbeat older than --prune-after, or a worker registered for this host whose pid
    is not a live Resque process. Without --force the heartbeat check honours Resque's
    one-minute prune lock, as workers do.
    """
    client = admin.client
    hostname = socket.gethostname()
    me = f"{hostname}:{os.getpid()}:pyresque-prune"
    pruner = Pruner(client.redis, client.keys, me, ("*",), hostname, prune_after,
                    on_dead_worker=on_dead_worker, max_recoveries=max_recoveries)
    expired = dry_run or force or bool(
        client.redis.set(client.keys.prune_lock, me, ex=60, nx=True))
    dead = pruner.dead_workers(expired=expired)
    outcomes = {worker_id: "dead" if dry_run else pruner.recover(worker_id, PRUNE_DIRTY_EXIT)
                for worker_id in dead}
    if admin.as_json:
        echo_json({"pruned": [{"worker": wid, "outcome": outcome}
                              for wid, outcome in outcomes.items()],
                   "heartbeats_checked": expired, "dry_run": dry_run})
        return
    if outcomes:
        click.echo(table(["WORKER", "JOB"], [[wid, outcome] for wid, outcome in outcomes.items()],
                         width=terminal_width()))
    verb = "would prune" if dry_run else "pruned"
    click.echo(f"{verb} {len(outcomes)} dead worker{'s' if len(outcomes) != 1 else ''}")
    if not expired:
        holder = views.text(client.redis.get(client.keys.prune_lock)) or "?"
        click.echo(f"heartbeats not checked: the prune lock is held by {holder} (a worker "
                   "pruned within the last minute); --force checks them anyway")


if __name__ == "__main__":
    main()
