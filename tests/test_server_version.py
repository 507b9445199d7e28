"""A server older than Redis 6.2 is refused at start with one line (protocol/server_version.py).

No Redis 6.0 binary is at hand, so an old server is played by a loopback stub here: it answers
``PING``, ``HELLO`` (redis-py 8 asks for RESP3 on connect), ``INFO``
(``redis_version:6.0.0``), ``SELECT`` and ``CLIENT`` as 6.0 would, refuses every other command
as unknown, and records what it was sent, so a test also sees that nothing was written before
the refusal. The real server of the run (``PYRESQUE_TEST_SERVER``) must pass.
"""

from __future__ import annotations

import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, Optional

import pytest
import redis
from admin_helpers import invoke, one_error_line
from servers import current
from worker_helpers import ROOT, command, worker_env

from pyresqueworker import QueueSpec, WorkerConfig, WorkerError, run_worker
from pyresqueworker.protocol.server_version import MINIMUM, NEEDS, require_supported, too_old

OLD = "6.0.0"
REDIS_5 = "5.0.7"  # Ubuntu 20.04's: no HELLO, so redis-py falls back to RESP2 (and says so)
# Commands the stub answers like Redis 6.0; a worker refused at start sends none other.
HARMLESS = {"PING", "INFO", "SELECT", "CLIENT", "HELLO"}


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _Handler(socketserver.StreamRequestHandler):
    server: _OldRedis

    def _read_command(self) -> Optional[list[str]]:
        line = self.rfile.readline()
        if not line:
            return None
        if not line.startswith(b"*"):  # an inline command
            return line.decode().split()
        words = []
        for _ in range(int(line[1:])):
            size = int(self.rfile.readline()[1:])
            words.append(self.rfile.read(size + 2)[:-2].decode(errors="replace"))
        return words

    def handle(self) -> None:
        while (words := self._read_command()) is not None:
            if not words:
                continue
            name = words[0].upper()
            self.server.seen.append(name)
            version = self.server.version
            if name == "PING":
                reply = b"+PONG\r\n"
            elif name == "HELLO" and version >= "6":
                pairs = [("server", "+redis"), ("version", f"+{version}"), ("proto", ":3"),
                         ("id", ":1"), ("mode", "+standalone"), ("role", "+master"),
                         ("modules", "*0")]
                reply = (f"%{len(pairs)}\r\n" + "".join(f"+{key}\r\n{value}\r\n"
                                                         for key, value in pairs)).encode()
            elif name == "INFO":
                section = words[1].lower() if len(words) > 1 else "server"
                reply = _bulk("# Cluster\r\ncluster_enabled:0\r\n" if section == "cluster" else
                              f"# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n")
            elif name in ("SELECT", "CLIENT") and not (len(words) > 1
                                                       and words[1].upper() == "SETINFO"):
                reply = b"+OK\r\n"
            else:  # CLIENT SETINFO came in 7.2, HELLO in 6.0
                reply = f"-ERR unknown command '{words[0]}'\r\n".encode()
            self.wfile.write(reply)


class _OldRedis(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, version: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.version = version
        self.seen: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def old_redis(request: pytest.FixtureRequest) -> Iterator[_OldRedis]:
    server = _OldRedis(getattr(request, "param", OLD))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def refusal(port: int, version: str = OLD) -> str:
    return (f"Redis {version} at 127.0.0.1:{port}/0 is too old: pyresqueworker needs Redis 6.2 or "
            "newer (it uses LMOVE)")


def run(program: list[str], *args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*program, *args], env=worker_env(url), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=25, stdin=subprocess.DEVNULL)


def the_one_line(result: subprocess.CompletedProcess[str], prog: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0].removeprefix(f"{prog}: error: ")


@pytest.mark.parametrize("processes", ["1", "2"])  # the worker's own start, the supervisor's
def test_pyresque_work_refuses_an_old_redis_with_one_line(old_redis: _OldRedis,
                                                          processes: str) -> None:
    url = f"redis://127.0.0.1:{old_redis.port}/0"
    result = run(command(), "--queues", "q", "--processes", processes, url=url)
    assert the_one_line(result, "pyresque-work") == refusal(old_redis.port)
    # Refused before it wrote anything: no heartbeat, no registration, no claim.
    assert set(old_redis.seen) <= HARMLESS, old_redis.seen


def test_pyresque_scheduler_refuses_an_old_redis_with_one_line(old_redis: _OldRedis) -> None:
    url = f"redis://127.0.0.1:{old_redis.port}/0"
    result = run([sys.executable, "-m", "pyresqueworker.cli.scheduler"], url=url)
    assert the_one_line(result, "pyresque-scheduler") == refusal(old_redis.port)
    assert set(old_redis.seen) <= HARMLESS, old_redis.seen


def test_pyresque_refuses_an_old_redis_with_one_line(old_redis: _OldRedis) -> None:
    result = invoke(f"redis://127.0.0.1:{old_redis.port}/0", "queues")
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == f"pyresque: error: {refusal(old_redis.port)}"


@pytest.mark.parametrize("old_redis", [REDIS_5], indirect=True)
def test_a_redis_without_hello_is_refused_too(old_redis: _OldRedis) -> None:
    """redis-py's own warning that it fell back to RESP2 comes first; the refusal is the last
    line, still no traceback."""
    url = f"redis://127.0.0.1:{old_redis.port}/0"
    result = run(command(), "--queues", "q", url=url)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last == f"pyresque-work: error: {refusal(old_redis.port, REDIS_5)}"
    assert set(old_redis.seen) <= HARMLESS, old_redis.seen


def test_run_worker_raises_one_line_worker_error(old_redis: _OldRedis) -> None:
    config = WorkerConfig(QueueSpec.parse("q"), redis_url=f"redis://127.0.0.1:{old_redis.port}/0",
                          interval=0, connect_timeout=0)
    with pytest.raises(WorkerError) as info:
        run_worker(config)
    assert str(info.value) == refusal(old_redis.port)


def test_the_server_under_test_is_supported(r: redis.Redis) -> None:
    require_supported(r, "the test server")  # raises if not
    assert current().version_tuple()[:2] >= MINIMUM


@pytest.mark.parametrize(("info", "expected"), [
    ({"redis_version": "6.2.0"}, None),
    ({"redis_version": "7.0.15"}, None),
    # Valkey reports the Redis it is compatible with, beside its own version.
    ({"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.8"}, None),
    ({}, None),  # no INFO (the demo's fakeredis): not judged
    ({"redis_version": "unknown"}, None),
    ({"redis_version": "6.0.16"}, "Redis 6.0.16 at here is too old"),
    ({"redis_version": "5.0.7"}, "Redis 5.0.7 at here is too old"),
    ({"redis_version": "6.0.16", "server_name": "keydb", "keydb_version": "6.3.4"},
     "keydb 6.3.4 (Redis 6.0.16) at here is too old"),
])
def test_too_old_reads_redis_version(info: dict[str, Any], expected: Optional[str]) -> None:
    said = too_old(info, "here")
    if expected is None:
        assert said is None
    else:
        assert said == f"{expected}: pyresqueworker needs Redis 6.2 or newer (it uses LMOVE)"


def test_the_commands_named_are_ones_the_package_sends() -> None:
    sources = "".join(path.read_text(encoding="utf-8")
                      for path in (ROOT / "pyresqueworker").rglob("*.py")
                      if path.name != "server_version.py")
    for name in NEEDS:
        assert f'"{name}"' in sources or name.lower() + "(" in sources, name


def test_the_stub_speaks_enough_redis_for_redis_py(old_redis: _OldRedis) -> None:
    client = redis.Redis(port=old_redis.port, socket_timeout=5)
    assert client.ping()
    assert client.info("server")["redis_version"] == OLD
    with socket.create_connection(("127.0.0.1", old_redis.port)) as sock:
        sock.sendall(b"PING\r\n")  # inline, as redis-cli or telnet would
        assert sock.recv(100) == b"+PONG\r\n"
    client.close()


# -- what differs between the servers, and is handled ---------------------------------------


def test_a_script_refused_for_lack_of_memory_is_redis_away_on_every_server() -> None:
    """Redis 6.2 wraps the OOM a script's command got ("Error running script (...): ...
    -OOM ..."), 7.0 and Valkey pass it on; either way the loops back off instead of logging a
    traceback for each try."""
    from fault_servers import fill_memory, start_maxmemory_redis

    from pyresqueworker.protocol._outage import is_redis_away

    with start_maxmemory_redis() as node:
        client = node.client()
        fill_memory(client)
        with pytest.raises(redis.exceptions.ResponseError) as info:
            client.eval("return redis.call('SET', KEYS[1], 'v')", 1, "k")
        assert is_redis_away(info.value), str(info.value)


@pytest.mark.parametrize("text", [
    "ERR Error running script (call to f_3cf7): @user_script:47: @user_script: 47: -OOM "
    "command not allowed when used memory > 'maxmemory'.",
    "Error running script (call to f_3cf7): @user_script:1: @user_script: 1: -NOREPLICAS Not "
    "enough good replicas to write.",
    "Error running script (call to f_3cf7): @user_script:9: @user_script: 9: -READONLY You "
    "can't write against a read only replica.",
])
def test_redis_6_script_wrapped_transient_replies_are_transient(text: str) -> None:
    from pyresqueworker.protocol.redis_errors import transient_code

    assert transient_code(text) == text.split(": -")[1].split()[0]
    assert transient_code(redis.exceptions.ResponseError(text)) is not None
    # A script's own error is not Redis being away.
    assert transient_code("Error running script (call to f_1): @user_script:1: boom") is None
