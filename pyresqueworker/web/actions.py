"""The dashboard's state-changing actions (POST only), each through the Client API.

An action returns the flash message to show. A stale index, a vanished entry or a bad form
value is an :class:`ActionError`, which the app turns into an error flash: never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Union
from urllib.parse import unquote

import redis

from ..client._client import Client
from ..client.failed_queue import FailedEntryError, FailedQueueBusyError
from ..protocol.redis_errors import raise_if_away
from .format import digest

__all__ = ["ACTIONS", "ActionError", "Form"]

Form = Mapping[str, str]
Raw = Union[bytes, str]

# How often a remove re-reads the list when another client changed it meanwhile.
_WATCH_ATTEMPTS = 5


class ActionError(Exception):
    """An action that could not be done; the message is shown to the user."""


def _field(form: Form, name: str) -> str:
    """A name the page's form carries percent-encoded (see macros.html's ``button``)."""
    value = unquote(form.get(name, ""))
    if not value:
        raise ActionError(f"The form has no {name}.")
    return value


def _index(form: Form) -> int:
    text = form.get("index", "")
    try:
        index = int(text)
    except ValueError:
        raise ActionError(f"{text[:40]!r} is not a failure index.") from None
    if index < 0:
        raise ActionError(f"{index} is not a failure index.")
    return index


def _check_entry(raw: Raw | None, index: int, expected: str) -> None:
    """The entry the page showed must still be at ``index`` (``expected`` is its digest)."""
    if raw is None:
        raise ActionError(f"There is no failure #{index} any more (the list changed); "
                          "nothing was done.")
    if expected and digest(raw) != expected:
        raise ActionError(f"Failure #{index} changed since the page was loaded (the list was "
                          "edited meanwhile); nothing was done. Check the list and try again.")


# -- failed jobs --------------------------------------------------------------------------


def retry_failed(client: Client, form: Form) -> str:
    """Resque's "Retry": mark the entry ``retried_at`` and enqueue its job again."""
    index = _index(form)
    expected = form.get("digest", "")
    _check_entry(client.redis.lindex(client.keys.failed, index), index, expected)
    try:
        # Checked again on the bytes the compare-and-set requeue acts on: no gap between the
        # check and the write.
        client.requeue(index, if_entry=lambda raw: not expected or digest(raw) == expected)
    except IndexError:
        raise ActionError(f"There is no failure #{index} any more; nothing was done.") from None
    except (FailedEntryError, FailedQueueBusyError) as exc:
        raise ActionError(f"Failure #{index} was not retried: {exc}.") from None
    return f"Failure #{index} was requeued."


def remove_failed(client: Client, form: Form) -> str:
    """Resque's "Remove", done only if the entry still holds the bytes the page showed."""
    index = _index(form)
    expected = form.get("digest", "")
    key = client.keys.failed
    with client.redis.pipeline(transaction=True) as pipe:
        for _ in range(_WATCH_ATTEMPTS):
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                _check_entry(pipe.lindex(key, index), index, expected)
                pipe.multi()
                # Resque's own sentinel removal, so resque-web sees the same list.
                pipe.lset(key, index, "")
                pipe.lrem(key, 1, "")
                pipe.execute()
                return f"Failure #{index} was removed."
            except redis.WatchError as exc:
                raise_if_away(exc)
                continue
    raise ActionError(f"The failed list kept changing; failure #{index} was not removed. "
                      "Try again.")


def retry_all(client: Client, form: Form) -> str:
    """Requeue every failure (retried ones too, as resque-web does)."""
    return f"{client.requeue_all()} failures were requeued."


def clear_failed(client: Client, form: Form) -> str:
    """Drop the whole failed list."""
    return f"{client.clear_failed()} failures were cleared."


def clear_retried(client: Client, form: Form) -> str:
    """Drop the failures that were already retried."""
    return f"{client.clear_retried()} retried failures were cleared."


# -- queues -------------------------------------------------------------------------------


def pause_queue(client: Client, form: Form) -> str:
    """Pause one queue for pyresqueworker workers."""
    queue = _field(form, "queue")
    # Each state is read just before its write, so the message says what this click changed.
    changed = queue not in client.paused_queues()
    client.pause_queue(queue)
    return (f"Queue {queue} is paused (pyresqueworker workers stop taking its jobs)." if changed
            else f"Queue {queue} was already paused; nothing changed.")


def unpause_queue(client: Client, form: Form) -> str:
    """Resume one queue."""
    queue = _field(form, "queue")
    changed = queue in client.paused_queues()
    client.unpause_queue(queue)
    return (f"Queue {queue} is resumed." if changed
            else f"Queue {queue} was not paused; nothing changed.")


def pause_all(client: Client, form: Form) -> str:
    """Resque's global pause: Ruby and Python workers stop claiming."""
    changed = not client.all_paused()
    client.pause_all()
    return ("All workers are paused (Ruby and Python)." if changed
            else "All workers were already paused; nothing changed.")


def unpause_all(client: Client, form: Form) -> str:
    """Lift the global pause."""
    changed = client.all_paused()
    client.unpause_all()
    return ("Workers are resumed." if changed
            else "Workers were not paused (pause-all-workers was not set); nothing changed.")


# -- periodic schedules -------------------------------------------------------------------


def enable_schedule(client: Client, form: Form) -> str:
    """Turn a periodic schedule on."""
    name = _field(form, "name")
    if not client.schedules.enable(name):
        raise ActionError(f"There is no schedule named {name}.")
    return f"Schedule {name} is enabled."


def disable_schedule(client: Client, form: Form) -> str:
    """Turn a periodic schedule off (it stays listed)."""
    name = _field(form, "name")
    if not client.schedules.disable(name):
        raise ActionError(f"There is no schedule named {name}.")
    return f"Schedule {name} is disabled."


def delete_schedule(client: Client, form: Form) -> str:
    """Delete a runtime schedule (code-declared ones come back with their workers)."""
    name = _field(form, "name")
    try:
        deleted = client.schedules.delete(name)
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    if not deleted:
        raise ActionError(f"There is no schedule named {name}.")
    return f"Schedule {name} was deleted."


#: POST path -> (action, page to return to when the form names none). Every action lives under
#: ``/action/``, so no page path (a queue may be named ``pause``) can collide with one.
ACTIONS: dict[str, tuple[Callable[[Client, Form], str], str]] = {
    "/action/failed/retry": (retry_failed, "/failed"),
    "/action/failed/remove": (remove_failed, "/failed"),
    "/action/failed/retry-all": (retry_all, "/failed"),
    "/action/failed/clear": (clear_failed, "/failed"),
    "/action/failed/clear-retried": (clear_retried, "/failed"),
    "/action/queues/pause": (pause_queue, "/queues"),
    "/action/queues/unpause": (unpause_queue, "/queues"),
    "/action/pause-all": (pause_all, "/"),
    "/action/unpause-all": (unpause_all, "/"),
    "/action/schedules/enable": (enable_schedule, "/schedules"),
    "/action/schedules/disable": (disable_schedule, "/schedules"),
    "/action/schedules/delete": (delete_schedule, "/schedules"),
}
