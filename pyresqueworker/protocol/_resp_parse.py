"""RESP2 on our own sockets: packing commands and reading replies.

hiredis does both in C when it is importable (a dependency, but an optional one in practice:
a platform without its wheel must still work); otherwise the pure-Python reader and packer here
do, with the same interface: ``feed`` bytes, ``gets`` a reply or ``False`` while one is
incomplete. Error replies come back as :class:`ReplyError` values in place (also inside an
``EXEC`` reply), never raised, so one refused command does not desynchronise a pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional, Union

__all__ = ["HAVE_HIREDIS", "ProtocolError", "PyReader", "ReplyError", "new_reader",
           "pack_command"]

try:
    import hiredis

    HAVE_HIREDIS = True
except ImportError:  # pragma: no cover - exercised by the pure-Python reader's own tests
    HAVE_HIREDIS = False


class ReplyError(Exception):
    """An error reply (``-ERR ...``), returned in the reply's place."""


class ProtocolError(ValueError):
    """The bytes read are not RESP: the connection is out of step and must be dropped."""


Reply = Union[bytes, int, None, ReplyError, list[Any]]


class PyReader:
    """A RESP2 reader in Python (what :func:`new_reader` gives without hiredis)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._pos = 0

    def feed(self, data: Any, offset: int = 0, length: int = -1) -> None:
        """Add bytes read from the socket (``data[offset:offset + length]``)."""
        end = len(data) if length < 0 else offset + length
        self._data += memoryview(data)[offset:end]

    def gets(self) -> Any:
        """The next complete reply, or ``False`` until one has been fed."""
        try:
            reply, pos = self._parse(self._pos)
        except _Incomplete:
            return False
        if pos >= 65536 or pos == len(self._data):  # (drop what was read now and then)
            del self._data[:pos]
            pos = 0
        self._pos = pos
        return reply

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._data.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return bytes(self._data[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Reply, int]:
        if pos >= len(self._data):
            raise _Incomplete
        kind = self._data[pos]
        line, pos = self._line(pos + 1)
        if kind == 0x2B:  # + simple string
            return line, pos
        if kind == 0x2D:  # - error
            return ReplyError(line.decode("utf-8", "replace")), pos
        if kind == 0x3A:  # : integer
            return _number(line), pos
        if kind == 0x24:  # $ bulk string
            size = _number(line)
            if size < 0:
                return None, pos
            if len(self._data) < pos + size + 2:
                raise _Incomplete
            return bytes(self._data[pos:pos + size]), pos + size + 2
        if kind == 0x2A:  # * array
            count = _number(line)
            if count < 0:
                return None, pos
            items: list[Any] = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise ProtocolError(f"Protocol error, got {chr(kind)!r} as reply type byte")


class _Incomplete(Exception):
    """More bytes are needed for the reply being parsed."""


def _number(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError(f"Protocol error, not a number: {line[:32]!r}") from None


#: The largest empty read buffer a hiredis reader keeps between replies. hiredis frees one
#: past 16 KB by default, so each 1 MB job grew a new one; glibc then handed the pages back and
#: faulted them in again: about 256 page faults and 1 ms of the worker's time per 1 MB job.
KEPT_READ_BUFFER = 4 << 20


def new_reader() -> Any:
    """A reader for one connection (its state is that connection's)."""
    if HAVE_HIREDIS:
        reader = hiredis.Reader(replyError=ReplyError, protocolError=ProtocolError)
        reader.setmaxbuf(KEPT_READ_BUFFER)
        return reader
    return PyReader()


def _encode(arg: Any) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, (bytearray, memoryview)):
        return bytes(arg)
    if isinstance(arg, float):
        return repr(arg).encode()
    if isinstance(arg, int) and not isinstance(arg, bool):
        return str(arg).encode()
    raise TypeError(f"cannot send a {type(arg).__name__} to Redis")


def _py_pack(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _encode(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


#: One command in RESP (hiredis >= 2.1 packs in C, about 3x faster than Python).
pack_command: Callable[[tuple[Any, ...]], bytes] = _py_pack
_hiredis_pack: Optional[Callable[[tuple[Any, ...]], bytes]] = (
    getattr(hiredis, "pack_command", None) if HAVE_HIREDIS else None)
if _hiredis_pack is not None:
    pack_command = _hiredis_pack
