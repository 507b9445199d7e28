"""The shop's job handlers, found by autodiscovery (no ``--app``). Each records what it saw
in Redis under ``site:*`` keys (outside the ``shop:`` namespace) for the test to read."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

from pyresqueworker import job
from pyresqueworker.contrib.django import get_client

from .models import Order

# The DB-API connections earlier jobs of this process used, to see whether they were closed.
_used: list[Any] = []


def _record(key: str, **fields: Any) -> None:
    get_client().redis.rpush(f"site:{key}", json.dumps(fields))


@job("Shop::CheckOrder", queue="orders")
def check_order(order_id: int) -> None:
    order = Order.objects.filter(pk=order_id).first()
    _record("checked", id=order_id, name=order.name if order else None)


@job("Shop::Ping", queue="checks")
def ping(tag: str) -> None:
    _record("pinged", tag=tag)


def _is_closed(raw: Any) -> bool:
    try:
        raw.execute("select 1")
    except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
        return True
    return False


def _note_connection(tag: str, fresh: bool) -> None:
    """Record whether every earlier job's connection is closed, then remember this one's
    (opened by the query the job just made, in this thread)."""
    _record("conn", tag=tag, fresh=fresh, earlier_closed=[_is_closed(raw) for raw in _used])
    assert connection.connection is not None
    _used.append(connection.connection)


@job("Shop::SyncConnection", queue="conn")
def sync_connection(tag: str) -> None:
    fresh = connection.connection is None
    Order.objects.count()
    _note_connection(tag, fresh)


@job("Shop::AsyncConnection", queue="conn")
async def async_connection(tag: str) -> None:
    await Order.objects.acount()  # the async ORM: sync_to_async, thread-sensitive
    await sync_to_async(_note_connection)(tag, False)
