"""Shared fixtures: a real redis-server on a free port (the server ``PYRESQUE_TEST_SERVER``
names, see servers.py), fakeredis, and the Ruby helper."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from servers import DIFFERS_ON, ENV, MATRIX_FILES, ServerMissing, current, server_binary

ROOT = Path(__file__).resolve().parent.parent
# Bytes real Ruby Resque and ActiveJob wrote (copied from shared/golden, see its README).
GOLDEN = ROOT / "tests" / "golden"
RUBY_CLIENT = ROOT / "examples" / "ruby_client"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server_matrix: the subset CI also runs on Redis 6.2 and Valkey 8.1 "
        "(tests/servers.py MATRIX_FILES)")


def pytest_report_header() -> str:
    try:
        server = current()
    except ServerMissing as exc:
        return f"test server: none ({exc})"
    return f"test server: {server.title} ({server.server}; {ENV}={server.choice})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    try:
        product = current().product
    except ServerMissing:
        product = ""
    for item in items:
        if item.path.name in MATRIX_FILES:
            item.add_marker(pytest.mark.server_matrix)
        differs = DIFFERS_ON.get((product, f"{item.path.name}::{item.name}"))
        if differs is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=differs))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _restore_package_logger() -> Iterator[None]:
    """Commands run in-process (click's CliRunner) configure the ``pyresqueworker`` logger;
    put it back so later tests' ``caplog`` still sees its records."""
    logger = logging.getLogger("pyresqueworker")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


def golden_state() -> dict[str, Any]:
    """golden/worker-state.json: every key a real Ruby worker had, with its type and value."""
    with open(GOLDEN / "worker-state.json", encoding="utf-8") as handle:
        state: dict[str, Any] = json.load(handle)
    return state


def load_worker_state(r: redis.Redis) -> dict[str, Any]:
    """Write every key of the golden Ruby worker state back into Redis; returns the state."""
    state = golden_state()
    for key, entry in state.items():
        value = entry["value"]
        if entry["type"] == "string":
            r.set(key, value)
        elif entry["type"] == "list":
            r.rpush(key, *value)
        elif entry["type"] == "set":
            r.sadd(key, *value)
        elif entry["type"] == "hash":
            r.hset(key, mapping=value)
    return state


class RedisServer:
    """A throw-away redis-server: no persistence, its own directory, a free port."""

    def __init__(
        self,
        extra_args: tuple[str, ...] = (),
        ready_port: int | None = None,
        tls: Path | None = None,
    ) -> None:
        try:
            binary = server_binary()
        except ServerMissing as exc:
            if os.environ.get(ENV):  # a server asked for by name must be there
                raise
            pytest.skip(str(exc))
        self.dir = tempfile.mkdtemp(prefix="pyresque-redis-")
        self.port = ready_port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        port_args = () if ready_port else ("--port", str(self.port))
        args = [
            binary, *port_args, "--bind", "127.0.0.1", "--dir", self.dir,
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", os.path.join(self.dir, "redis.log"), *extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                self._probe(tls)
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{binary} did not start: {self._log_tail()}") from None
                time.sleep(0.02)

    def _log_tail(self) -> str:
        """What the server said before it died: a bad option goes to stderr, the rest to its
        log."""
        said = ""
        if self.process.poll() is not None and self.process.stderr is not None:
            said = self.process.stderr.read().decode(errors="replace")
        with contextlib.suppress(OSError):
            said += Path(self.dir, "redis.log").read_text(encoding="utf-8")
        return said[-1000:] or "no log"

    def _probe(self, tls: Path | None) -> None:
        if tls is None:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
            except redis.AuthenticationError:
                pass  # up, but wants credentials
            return
        redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, ssl=True,
                    ssl_ca_certs=str(tls / "ca.crt"), ssl_certfile=str(tls / "client.crt"),
                    ssl_keyfile=str(tls / "client.key")).ping()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def stop(self) -> None:
        from fault_servers import terminate

        terminate(self.process)
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_files() -> Iterator[Path]:
    """A CA, and a server and a client certificate it signed (for 127.0.0.1), made with
    openssl in a temporary directory: ``ca.crt``, ``server.*`` and ``client.*`` (.crt, .key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = Path(tempfile.mkdtemp(prefix="pyresque-tls-"))

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", f"{name}.crt")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def tls_redis_server(tls: Path) -> RedisServer:
    """A redis-server that speaks TLS only (on its ``port``) and requires a client certificate
    signed by the CA of ``tls`` (``tls-auth-clients yes``, Redis's default)."""
    if not current().tls:
        pytest.skip(f"{current().title} ({ENV}={current().choice}) is built without TLS")
    port = free_port()
    return RedisServer((
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls / "server.crt"),
        "--tls-key-file", str(tls / "server.key"),
        "--tls-ca-cert-file", str(tls / "ca.crt"), "--tls-auth-clients", "yes",
    ), ready_port=port, tls=tls)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of the session's real Redis, emptied before each test."""
    redis_server.client().flushall()
    yield redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A raw redis-py client (bytes replies) on the emptied real Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=[0.0, 0.0002], ids=["sleeping", "polling"])
def slot_claimer(redis_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """A claimer on a connection of its own, as slots have (large items taken watched), and
    its keys (namespace ``resque:``); worker id ``claim_helpers.WID``. Once as slots sharing
    a process wait for replies (asleep), once as a lone slot does (polling, see ReplySpin)."""
    from claim_helpers import WID

    from pyresqueworker.protocol.wire import Keys
    from pyresqueworker.worker._claim import Claimer

    conn = redis.Redis.from_url(redis_url, single_connection_client=True)
    keys = Keys("resque:")
    yield Claimer(conn, keys, WID, reply_spin=request.param), keys
    conn.close()


@pytest.fixture
def default_client_url(redis_url: str) -> Iterator[str]:
    """``pyresqueworker.configure()`` on the test Redis, so job handles enqueue there; back to
    the environment's settings at teardown."""
    from pyresqueworker import configure

    configure(redis_url)
    yield redis_url
    configure()


@pytest.fixture
def fake_redis() -> redis.Redis:
    """An in-process fakeredis (with Lua) for pure unit tests."""
    import fakeredis

    return fakeredis.FakeRedis()


def ruby_available() -> bool:
    if shutil.which("ruby") is None:
        return False
    # Oj: Resque's MultiJson encoder in most Rails apps (Python writes its bytes).
    check = subprocess.run(["ruby", "-e", "require 'redis'; require 'oj'"], capture_output=True)
    return check.returncode == 0


@pytest.fixture(scope="session")
def ruby() -> str:
    """Path of ``ruby`` with the redis and oj gems, or skip (CI installs them: it never skips)."""
    if not ruby_available():
        if os.environ.get("CI"):
            pytest.fail("ruby with the redis and oj gems is required in CI")
        pytest.skip("ruby with the redis and oj gems is not installed")
    return str(shutil.which("ruby"))



# -- worker subprocesses (tests/worker_helpers.py) ---------------------------------------------


@pytest.fixture
def spawn_worker(redis_url: str) -> Iterator[object]:
    """Start ``pyresque-work`` subprocesses on the test Redis; all are killed at teardown.

    ``spawn_worker("--queues", "high,low", env={...})`` returns a started
    ``worker_helpers.WorkerProc`` (the test app, ``--redis`` and ``--interval 0.1`` added
    unless ``defaults=False``).
    """
    from worker_helpers import WorkerProc, start_worker

    started: list[WorkerProc] = []

    def spawn(*args: str, env: dict[str, str] | None = None, defaults: bool = True) -> WorkerProc:
        proc = start_worker(redis_url, *args, env=env, defaults=defaults)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.cleanup()


# -- node-resque (tests/node_helpers.py) -------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """Path of ``node`` with the pinned node-resque in tests/node/node_modules, or skip (CI
    installs both with scripts/test: it never skips)."""
    from node_helpers import node_binary

    found = node_binary()
    if found is None:
        reason = ("node and node-resque are not installed (bash scripts/test installs them: "
                  "apt-get install nodejs npm, then npm ci in tests/node)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture
def spawn_node(node: str, redis_url: str) -> Iterator[object]:
    """Start node-resque scripts on the test Redis; all are killed at teardown.

    ``spawn_node("worker.js", "q1,q2")`` or ``spawn_node("scheduler.js", "1000")`` returns a
    started ``node_helpers.NodeProc``.
    """
    from node_helpers import NodeProc

    started: list[NodeProc] = []

    def spawn(script: str, *args: str) -> NodeProc:
        proc = NodeProc(node, script, redis_url, *args)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.cleanup()


# -- the dashboard (tests/web_helpers.py) -----------------------------------------------------


@pytest.fixture
def client(r: redis.Redis) -> Any:
    """A :class:`~pyresqueworker.Client` on the test Redis."""
    from pyresqueworker import Client

    return Client(r)


@pytest.fixture
def web(client: Any) -> Any:
    """The dashboard app on ``client``, driven through WSGI (``web_helpers.WsgiClient``)."""
    from web_helpers import WsgiClient

    from pyresqueworker.web import make_app

    return WsgiClient(make_app(client))


# -- in-process drains (results, dependencies, batches) ----------------------------------------


@pytest.fixture
def drain(redis_url: str) -> Any:
    """``drain(registry, "q", execution="threads", **config)``: run a worker in this process
    on the test Redis until every listed queue is empty (``--interval 0``)."""
    from pyresqueworker import QueueSpec, WorkerConfig, run_worker

    def run(registry: Any, queues: str = "q", execution: str = "threads", **config: Any) -> int:
        settings = WorkerConfig(queues=QueueSpec.parse(queues), redis_url=redis_url,
                                interval=0, execution=execution, **config)
        return run_worker(settings, registry)

    return run
