"""The claim's own connection (protocol._claim_link, and the asyncio links): opened and set up
as the slot's redis-py connection would be, moved by the locator, read with hiredis or, where
hiredis is missing, with the pure-Python reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from claim_helpers import RUN_AT, WID
from conftest import RedisServer, free_port

from pyresqueworker.protocol import _claim_link, _link_settings, _resp, _resp_parse
from pyresqueworker.protocol._claim_link import ClaimLink
from pyresqueworker.protocol._link_settings import LinkSettings
from pyresqueworker.protocol._locate import NodeLocator
from pyresqueworker.protocol._resp_parse import ProtocolError, PyReader, ReplyError
from pyresqueworker.protocol.connection import ConnectionFactory
from pyresqueworker.protocol.redis_errors import RedisUnavailable
from pyresqueworker.protocol.wire import Keys
from pyresqueworker.worker._aio_link import AioLink
from pyresqueworker.worker._claim import NO_FINISH, SUCCESS, Claimed, Claimer

STREAM = (b"+OK\r\n-ERR bad thing\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
          b"*3\r\n$1\r\na\r\n-NOSCRIPT No matching script\r\n*2\r\n:1\r\n$-1\r\n"
          + b"$100000\r\n" + b"x" * 100_000 + b"\r\n")


def shown(reply: Any) -> Any:
    """A reply with its error values comparable."""
    if isinstance(reply, list):
        return [shown(item) for item in reply]
    if isinstance(reply, Exception):
        return ("error", str(reply))
    return reply


def read_all(reader: Any, data: bytes, chunk: int) -> list[Any]:
    replies = []
    for at in range(0, len(data), chunk):
        reader.feed(data[at:at + chunk])
        while (reply := reader.gets()) is not False:
            replies.append(shown(reply))
    return replies


EXPECTED = [b"OK", ("error", "ERR bad thing"), 42, -7, b"hello", b"", None, None, [],
            [b"a", ("error", "NOSCRIPT No matching script"), [1, None]], b"x" * 100_000]


@pytest.mark.parametrize("chunk", [1, 3, 4096, len(STREAM)])
def test_the_pure_python_reader_reads_what_hiredis_reads(chunk: int) -> None:
    assert read_all(PyReader(), STREAM, chunk) == EXPECTED
    if _resp_parse.HAVE_HIREDIS:
        assert read_all(_resp_parse.new_reader(), STREAM, chunk) == EXPECTED
    reader = PyReader()
    reader.feed(bytearray(b"..:5\r\n"), 2, 4)  # (a slice, as recv_into's buffer is fed)
    assert reader.gets() == 5
    reader.feed(b"?what\r\n")
    with pytest.raises(ProtocolError):
        reader.gets()


def test_claims_work_without_hiredis(redis_url: str, r: redis.Redis,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_resp_parse, "HAVE_HIREDIS", False)
    for module in (_resp, _claim_link):
        monkeypatch.setattr(module, "pack_command", _resp_parse._py_pack)
    conn = redis.Redis.from_url(redis_url, single_connection_client=True)
    claimer = Claimer(conn, Keys("resque:"), WID)
    small = json.dumps({"class": "Small", "args": [1]}).encode()
    large = json.dumps({"class": "Big", "args": ["y" * 200_000]}).encode()
    r.rpush("resque:queue:q", small, large, b"not json")
    assert claimer.claim(["q"], NO_FINISH, RUN_AT) == Claimed("q", small, True)
    assert claimer.claim(["q"], SUCCESS, RUN_AT) == Claimed("q", large, True)
    assert claimer.claim(["q"], SUCCESS, RUN_AT) == Claimed("q", b"not json", False)
    assert claimer.claim(["q"], SUCCESS, RUN_AT) is None
    assert isinstance(claimer.caller.connection, ClaimLink)
    assert isinstance(claimer.caller.connection.reader, PyReader)
    assert int(r.get("resque:stat:processed") or 0) == 3
    conn.close()


@pytest.fixture
def guarded() -> Iterator[RedisServer]:
    server = RedisServer(("--requirepass", "s3cret"))
    yield server
    server.stop()


def test_a_slot_claims_on_a_socket_of_its_own_set_up_like_its_client(
        guarded: RedisServer) -> None:
    url = f"redis://:s3cret@127.0.0.1:{guarded.port}/3"
    admin = redis.Redis(port=guarded.port, password="s3cret", db=3)
    slot = ConnectionFactory(url).connect(single_connection_client=True, client_name="slot-7")
    claimer = Claimer(slot, Keys("resque:"), WID)
    item = json.dumps({"class": "A", "args": []}).encode()
    admin.rpush("resque:queue:q", item)
    assert claimer.claim(["q"], NO_FINISH, RUN_AT) == Claimed("q", item, True)  # in db 3
    clients = {(c["db"], c["cmd"].split("|")[0]) for c in admin.client_list()
               if c["name"] == "slot-7"}
    # The claim's own socket only: it loads the script too (a claim opens no redis-py one).
    assert clients == {("3", "evalsha")}, clients
    wrong = ConnectionFactory(url.replace("s3cret", "nope")).connect(
        single_connection_client=True)
    with pytest.raises(redis.exceptions.AuthenticationError):
        Claimer(wrong, Keys("resque:"), WID).claim(["q"], NO_FINISH, RUN_AT)
    slot.close()
    admin.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that takes connections and bytes and never answers (Redis in a black hole)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def drain(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass

    def swallow() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            held.append(sock)
            threading.Thread(target=drain, args=(sock,), daemon=True).start()

    threading.Thread(target=swallow, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for sock in held:
        sock.close()


def test_a_claim_waiting_on_a_silent_redis_ends_when_its_slot_gives_up(silent_port: int
                                                                      ) -> None:
    """The wait for a reply (here the script's load, the first thing a claim sends) is cut
    into slices; between them the slot's ``give_up`` is asked, so a stopping worker does not
    sit out a 30 s reply timeout."""
    conn = ConnectionFactory(f"redis://127.0.0.1:{silent_port}").connect(
        single_connection_client=True, socket_timeout=30)
    stopping = threading.Event()
    asked: list[float] = []

    def give_up(waited: float) -> bool:
        asked.append(waited)
        return stopping.is_set() and waited >= 1.0

    threading.Timer(0.5, stopping.set).start()
    claimer = Claimer(conn, Keys("resque:"), WID, give_up=give_up)
    with pytest.raises(redis.exceptions.ConnectionError, match=r"no reply from Redis in 1 s"):
        claimer.claim(["q"], NO_FINISH, RUN_AT)
    assert asked[:4] == [0.25, 0.5, 0.75, 1.0]
    assert isinstance(claimer.caller.connection, ClaimLink)


def test_without_giving_up_a_claim_waits_its_reply_timeout(silent_port: int) -> None:
    conn = ConnectionFactory(f"redis://127.0.0.1:{silent_port}").connect(
        single_connection_client=True, socket_timeout=0.6)
    claimer = Claimer(conn, Keys("resque:"), WID, give_up=lambda _waited: False)
    with pytest.raises(redis.exceptions.ConnectionError, match=r"no reply from Redis in 0\.6 s"):
        claimer.claim(["q"], NO_FINISH, RUN_AT)


def test_the_link_connects_where_the_locator_says_and_follows_it(redis_server: RedisServer
                                                                 ) -> None:
    dead = ("127.0.0.1", free_port())
    live = ("127.0.0.1", redis_server.port)
    locator = NodeLocator([dead, live])
    link = ClaimLink(LinkSettings(locator=locator, connect_timeout=2.0, timeout=2.0))
    link.connect()
    assert link.address == live and locator.candidates()[0] == live  # the dead one skipped
    assert not link.stale()
    locator.refresh()  # (a demoted master, as a READONLY reply says)
    assert link.stale()
    link.disconnect()


class OneReply:
    """A server on loopback that answers every command of its first connection with
    ``reply`` (after the set-up's, which it answers +OK)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while (data := conn.recv(65536)):
                conn.sendall(self.reply * data.count(b"*"))

    def close(self) -> None:
        self.listener.close()


def test_a_moved_reply_redirects_the_claim_to_the_owner(redis_server: RedisServer) -> None:
    fake = OneReply(f"-MOVED 3999 127.0.0.1:{redis_server.port}\r\n".encode())
    try:
        locator = NodeLocator([("127.0.0.1", fake.port)])
        conn = redis.Redis(port=fake.port, single_connection_client=False)
        link = ClaimLink(LinkSettings(locator=locator, timeout=2.0, connect_timeout=2.0))
        caller = _resp.FastCaller(conn)
        caller.connection = link
        with pytest.raises(RedisUnavailable) as raised:
            caller("GET", "k")
        assert raised.value.code == "MOVED" and link.sock is None  # dropped
        assert caller("PING") == b"PONG" and link.address == ("127.0.0.1", redis_server.port)
        link.disconnect()
        conn.close()
    finally:
        fake.close()


def test_an_asyncio_link_is_set_up_like_the_factorys_connections(
        guarded: RedisServer) -> None:
    url = f"redis://:s3cret@127.0.0.1:{guarded.port}/3"
    admin = redis.Redis(port=guarded.port, password="s3cret", db=3)

    async def run() -> list[Any]:
        link = AioLink(ConnectionFactory(url), timeout=5.0)
        try:
            first = await link.execute([("SET", "k", "v"), ("GET", "k"), ("EVALSHA", "0" * 40, 0)])
            return [*first, link.connects]
        finally:
            await link.close()

    ok, value, missing, connects = asyncio.run(run())
    assert (ok, value, connects) == (b"OK", b"v", 1)
    assert isinstance(missing, redis.exceptions.NoScriptError)
    assert admin.get("k") == b"v"  # written in db 3
    admin.close()


def test_an_error_value_is_not_raised_by_the_reader() -> None:
    reader = _resp_parse.new_reader()
    reader.feed(b"-OOM command not allowed\r\n")
    reply = reader.gets()
    assert isinstance(reply, ReplyError)
    assert isinstance(_link_settings.reply_exception(str(reply)), RedisUnavailable)
