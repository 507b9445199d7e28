"""What the claim tests share: a slot's ids, a claimer on a connection, a lost reply."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis

from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker import _claim as fetch
from pyresqueworker.worker._claim import Claimer

WID = "host:1:high,low"
RUN_AT = "2024-01-15T09:50:00Z"


def make(r: redis.Redis, namespace: str = "resque:") -> tuple[Claimer, Keys]:
    keys = Keys(namespace)
    return Claimer(r, keys, WID), keys


def cut_reply(monkeypatch: pytest.MonkeyPatch, *, after_running: bool) -> None:
    """The next claim call's reply never comes (the call ran first if ``after_running``)."""
    real = fetch._claim

    def lossy(
        conn: redis.Redis, keys: Sequence[str], args: Sequence[object], *rest: object
    ) -> object:
        if after_running:
            real(conn, keys, args)
        raise redis.ConnectionError("connection cut")

    monkeypatch.setattr(fetch, "_claim", lossy)
