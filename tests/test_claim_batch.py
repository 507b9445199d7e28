"""The asyncio claim batch (many slots' claims in one write): a call that may have run is never
forgotten, so the slot's next claim resolves it instead of finishing over the job it took."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis
from claim_helpers import RUN_AT, make

from pyresqueworker.protocol._resp import LuaScript
from pyresqueworker.protocol.connection import ConnectionFactory
from pyresqueworker.worker._aio_link import AioLink, LinkError
from pyresqueworker.worker._claim import Claimed, Finish
from pyresqueworker.worker._claim_batch import ClaimBatcher

# A tracked job's end that Redis refuses once (as in an OOM window), then runs.
REFUSED_ONCE = LuaScript("if redis.call('INCR', KEYS[1]) < 2 then return redis.error_reply("
                         "'OOM fake') end return redis.call('SET', KEYS[2], ARGV[1])")


class CutAfter(AioLink):
    """A real link whose connection is cut during the pipeline after its first ``sends``."""

    def __init__(self, url: str, sends: int) -> None:
        super().__init__(ConnectionFactory(url), timeout=5.0)
        self.sends = sends

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        if self.sends == 0:
            await self.close()
            raise LinkError("lost the connection to Redis: cut", sent=True)
        self.sends -= 1
        return await super().execute(commands)


def test_a_cut_while_an_end_is_sent_again_leaves_the_claims_to_resolve(
        redis_url: str, r: redis.Redis) -> None:
    claimer, keys = make(r)
    r.rpush(keys.queue("high"), b'{"class":"A"}', b'{"class":"B"}')
    assert claimer.claim(["high"], Finish("0"), RUN_AT) == Claimed("high", b'{"class":"A"}', True)
    end = REFUSED_ONCE.run(["tries", "ended"], ["A"])
    finish = Finish("1", ahead=(end,))

    async def claim_in_a_batch() -> None:
        link = CutAfter(redis_url, sends=1)
        try:
            await ClaimBatcher([link]).claim(claimer, ["high"], finish, RUN_AT)
        finally:
            await link.close()

    # The batch's write finished A and claimed B, and A's end was refused; the cut came as the
    # end was sent again.
    with pytest.raises(LinkError):
        asyncio.run(claim_in_a_batch())
    assert claimer.needs_resolving
    # The slot claims again with the same completion: B is still its job, counted once.
    assert claimer.claim(["high"], finish, RUN_AT) == Claimed("high", b'{"class":"B"}', True)
    assert r.get(keys.stat("processed")) == b"1"
    claimer.claim([], Finish("1"), RUN_AT)  # B's completion carries A's end at last
    assert r.get("ended") == b"A"
