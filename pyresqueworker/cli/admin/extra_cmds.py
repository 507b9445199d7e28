"""``pyresque schedules ...``, ``pyresque history`` and ``pyresque web``."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Optional

import click

from ...client.history import History, HistoryRecord
from ...protocol import wire
from ...worker.periodic import Schedule, ScheduleStore
from .context import AdminContext, AdminError, admin_command, json_array
from .proctitle import hide_password_from_ps
from .render import echo_json, format_age, format_ms, table, terminal_width

__all__ = ["history", "schedules", "web"]


# -- schedules -----------------------------------------------------------------------------


@click.group()
def schedules() -> None:
    """Periodic (cron) jobs: the runtime ones in Redis and those declared in workers' code."""


def _store(admin: AdminContext) -> ScheduleStore:
    return admin.client.schedules


def _schedule_row(schedule: Schedule, now: float) -> dict[str, Any]:
    next_run = None
    if schedule.enabled:
        moment = schedule.next_run(datetime.fromtimestamp(now, timezone.utc))
        next_run = wire.iso_utc(moment.timestamp())
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "class": schedule.class_name,
        "args": schedule.args,
        "queue": schedule.queue,
        "description": schedule.description,
        "enabled": schedule.enabled,
        "source": schedule.source,
        "last_enqueued_at": schedule.last_enqueued_at,
        "next_run": next_run,
    }


@schedules.command("list")
@admin_command
def schedules_list(admin: AdminContext) -> None:
    """Every schedule with its next and last firing."""
    now = admin.now()
    rows = [_schedule_row(schedule, now) for schedule in _store(admin).list()]
    if admin.as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no schedules")
        return
    click.echo(table(
        ["NAME", "CRON", "CLASS", "ARGS", "QUEUE", "ENABLED", "SOURCE", "NEXT", "LAST"],
        [[row["name"], row["cron"], row["class"], wire.dumps(row["args"]), row["queue"],
          "yes" if row["enabled"] else "no", row["source"],
          format_age(wire.parse_time(row["next_run"]), now) if row["next_run"] else "-",
          format_age(wire.parse_time(row["last_enqueued_at"]), now)] for row in rows],
        width=terminal_width(), shrink_first=(3,)))


@schedules.command("add")
@click.argument("name")
@click.option("--cron", required=True, help="Five-field cron expression, e.g. '*/5 * * * *'.")
@click.option("--class", "class_name", required=True, help="Job class to enqueue.")
@click.option("--args", "args_json", default="[]", show_default=True,
              help="The job's arguments as a JSON array.")
@click.option("--queue", "-q", required=True, help="Queue to enqueue to.")
@click.option("--description", default="", help="Free text shown in listings.")
@click.option("--disabled", is_flag=True, help="Store it disabled (enable it later).")
@click.option("--replace", is_flag=True, help="Overwrite a runtime schedule of that name.")
@admin_command
def schedules_add(admin: AdminContext, name: str, cron: str, class_name: str, args_json: str,
                  queue: str, description: str, disabled: bool, replace: bool) -> None:
    """Add a runtime schedule NAME; workers with periodic jobs fire it from their next tick."""
    args = json_array(args_json, "--args")
    schedule = _store(admin).add(name, cron, class_name, args, queue=queue,
                                 description=description, enabled=not disabled,
                                 replace=replace)
    row = _schedule_row(schedule, admin.now())
    if admin.as_json:
        echo_json(row)
        return
    when = format_age(wire.parse_time(row["next_run"]), admin.now()) if row["next_run"] \
        else "never (disabled)"
    click.echo(f"added schedule {name}: {class_name}({wire.dumps(args)[1:-1]}) on {queue} "
               f"at '{cron}'; next run {when}")


def _toggle(admin: AdminContext, name: str, action: str) -> None:
    store = _store(admin)
    done = {"enable": store.enable, "disable": store.disable, "delete": store.delete}[action](name)
    if not done:
        raise AdminError(f"no schedule named {name!r}")
    if admin.as_json:
        echo_json({"name": name, "action": action})
    else:
        click.echo(f"{action}d schedule {name}")


@schedules.command("enable")
@click.argument("name")
@admin_command
def schedules_enable(admin: AdminContext, name: str) -> None:
    """Let schedule NAME fire again."""
    _toggle(admin, name, "enable")


@schedules.command("disable")
@click.argument("name")
@admin_command
def schedules_disable(admin: AdminContext, name: str) -> None:
    """Stop schedule NAME firing (it stays listed)."""
    _toggle(admin, name, "disable")


@schedules.command("delete")
@click.argument("name")
@admin_command
def schedules_delete(admin: AdminContext, name: str) -> None:
    """Delete runtime schedule NAME (code-declared ones can only be disabled)."""
    _toggle(admin, name, "delete")


# -- history -------------------------------------------------------------------------------


@click.command()
@click.option("--class", "class_name", help="Only jobs of this class (ActiveJob: its job class).")
@click.option("--id", "job_id", help="Every run of the job with this id (ActiveJob job_id, or "
                                     "the payload's \"id\").")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1),
              help="Most records to show, newest first.")
@admin_command
def history(admin: AdminContext, class_name: Optional[str], job_id: Optional[str],
            limit: int) -> None:
    """Finished jobs, newest first (recorded by workers run with --history)."""
    store = History(admin.client.redis, admin.client.keys)
    if job_id is not None:
        records = [r for r in store.by_id(job_id)
                   if class_name is None or r.class_name == class_name][:limit]
    else:
        records = store.recent(limit, class_name=class_name)
    if admin.as_json:
        echo_json([record.to_dict() for record in records])
        return
    if not records:
        click.echo("no matching history" if store.count() else
                   "no history recorded (run workers with --history 7d)")
        return
    now = admin.now()
    click.echo(table(
        ["FINISHED", "OUTCOME", "DURATION", "QUEUE", "CLASS", "JOB ID", "WORKER", "ERROR"],
        [_history_cells(record, now) for record in records],
        right=(2,), width=terminal_width(), shrink_first=(7, 6)))


def _history_cells(record: HistoryRecord, now: float) -> list[Any]:
    return [format_age(record.finished_at, now), record.outcome, format_ms(record.duration_ms),
            record.queue, record.class_name, record.job_id or "-", record.worker,
            (record.error or "").split("\n", 1)[0]]


# -- web -----------------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; then use --username).")
@click.option("--port", default=5040, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--username", help="Require HTTP basic auth with this user name.")
@click.option("--password-env", metavar="VAR",
              help="Environment variable holding the basic-auth password (never a flag, "
                   "so it stays out of `ps`).")
@admin_command
def web(admin: AdminContext, host: str, port: int, username: Optional[str],
        password_env: Optional[str]) -> None:
    """Serve the web dashboard (queues, workers, failures, history) until Ctrl-C."""
    password = None
    if (username is None) != (password_env is None):
        raise click.UsageError("--username and --password-env go together")
    if password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise click.UsageError(f"the environment variable {password_env} (--password-env) "
                                   "is not set or empty")
    from ...log import setup_logging
    from ...web import serve  # only this command needs the web package
    from ...web.security import is_loopback_host

    admin.client.redis.ping()  # an unreachable Redis is reported now, not on the first page
    hide_password_from_ps(admin, "web", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if username is None and not is_loopback_host(host):
        click.echo(f"warning: {host} is reachable from other machines and there is no "
                   "--username: anyone who reaches it can retry and delete jobs", err=True)
    setup_logging("INFO")
    try:
        serve(admin.client, host=host, port=port, username=username, password=password)
    except OSError as exc:
        raise AdminError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
