"""Mistakes a worker used to start with in silence (issue 24): a mistyped queue, no handler at
all, and a class with no handler, each named once, in the terms of how the worker was started
(``pyresque-work`` and its ``--app``, or ``run_worker`` called from Python)."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from typing import Callable

import pytest
import redis
from worker_helpers import NS, WorkerProc, wait_failures, wait_ran, wait_until

from pyresqueworker import QueueSpec, Registry, WorkerConfig, run_worker

Spawn = Callable[..., WorkerProc]

NO_HANDLERS_CLI = ("no job handler is registered: every job will fail with NameError (is the "
                   "module that registers the handlers given to pyresque-work with --app?)")
NO_HANDLERS_PYTHON = ("no job handler is registered: every job will fail with NameError (import "
                      "the module that registers the handlers before calling run_worker, and "
                      "pass run_worker the Registry if it is not the default one)")


def typo(name: str, closest: str | None = None) -> str:
    guess = f": did you mean {closest!r}?" if closest else ""
    return f"queue {name!r} is empty and not in resque:queues (a typo?){guess}"


def unknown_class_cli(name: str) -> str:
    return (f"no Python handler is registered for class {name!r}: its jobs fail with NameError "
            "(is the module that registers its handler given to pyresque-work with --app?)")


def unknown_class_python(name: str) -> str:
    return (f"no Python handler is registered for class {name!r}: its jobs fail with NameError "
            "(import the module that registers its handler before calling run_worker, and pass "
            "run_worker the Registry if it is not the default one)")


def known_queues(r: redis.Redis, *names: str) -> None:
    """Queues Resque knows, as a push leaves them: in the ``queues`` set."""
    r.sadd(NS + "queues", *names)


def started_and_stopped(worker: WorkerProc, starts: int = 1) -> str:
    """The worker's whole log, once ``starts`` worker processes started and it was stopped."""
    wait_until(lambda: worker.log().count("worker started") >= starts or None,
               f"{starts} worker process(es) started", timeout=15)
    assert worker.stop(signal.SIGTERM) == 0, worker.log()
    return worker.log()


# -- pyresque-work --------------------------------------------------------------------------------


def test_a_mistyped_queue_is_named_once_with_the_closest_known_one(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    known_queues(r, "high", "low")
    r.rpush(NS + "queue:fresh", '{"class":"Record","args":[]}')  # jobs, not yet in the set
    worker = spawn_worker("--queues", "hihg=2,low=1,fresh=1,zzqqx=1")
    log = started_and_stopped(worker)
    assert log.count(typo("hihg", "high")) == 1
    assert log.count(typo("zzqqx") + "\n") == 1  # nothing close: no guess
    assert log.count("is empty and not in resque:queues") == 2  # not low, not fresh
    assert "no job handler is registered" not in log  # --app worker_jobs registers some


def test_globs_are_not_checked_but_a_queue_named_beside_them_is(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    known_queues(r, "mail_out", "low", "high")
    worker = spawn_worker("--queues", "mial_*,*,low,hgih,!slwo")
    log = started_and_stopped(worker)
    assert log.count(typo("hgih", "high")) == 1
    assert log.count("is empty and not in") == 1  # not the globs, the exclusion or low


def test_with_processes_the_supervisor_warns_once_for_all_of_them(
    r: redis.Redis, redis_url: str, spawn_worker: Spawn
) -> None:
    known_queues(r, "high")
    worker = spawn_worker("--queues", "hihg", "--processes", "2", "--redis", redis_url,
                          "--interval", "0.1", defaults=False)  # no --app
    log = started_and_stopped(worker, starts=2)
    assert log.count(typo("hihg", "high")) == 1
    assert log.count(NO_HANDLERS_CLI) == 1


def test_no_app_warns_that_every_job_will_fail(
    r: redis.Redis, redis_url: str, spawn_worker: Spawn
) -> None:
    known_queues(r, "q")
    worker = spawn_worker("--queues", "q", "--redis", redis_url, "--interval", "0.1",
                          defaults=False)
    wait_until(lambda: "worker started" in worker.log() or None, "the worker started")
    r.rpush(NS + "queue:q", '{"class":"Record","args":[]}')
    [entry] = wait_failures(r, 1)
    assert (entry["exception"], entry["error"]) == ("NameError", "uninitialized constant Record")
    log = started_and_stopped(worker)
    assert log.count(NO_HANDLERS_CLI) == 1
    assert log.count(unknown_class_cli("Record")) == 1
    assert "is empty and not in" not in log


def test_a_class_without_a_handler_is_named_once_and_its_failure_keeps_rubys_text(
    r: redis.Redis, spawn_worker: Spawn
) -> None:
    known_queues(r, "q")
    worker = spawn_worker("--queues", "q")
    wait_until(lambda: "worker started" in worker.log() or None, "the worker started")
    r.rpush(NS + "queue:q", '{"class":"Recrod","args":[1]}', '{"class":"Recrod","args":[2]}',
            '{"class":"Record","args":[3]}')
    wait_ran(r, 1)
    found = wait_failures(r, 2)
    assert {(e["exception"], e["error"]) for e in found} == {
        ("NameError", "uninitialized constant Recrod")}
    log = started_and_stopped(worker)
    assert log.count(unknown_class_cli("Recrod")) == 1
    assert "no job handler is registered" not in log


# -- run_worker, called from Python ---------------------------------------------------------------


@pytest.fixture
def in_process(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Warnings of a ``run_worker`` in this process; the signal handlers it installs are put
    back afterwards, so Ctrl-C still stops pytest."""
    signals = (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2,
               signal.SIGCONT)
    saved = {sig: signal.getsignal(sig) for sig in signals}
    caplog.set_level(logging.WARNING, logger="pyresqueworker")
    yield caplog
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]


def drain(redis_url: str, queues: str, registry: Registry) -> None:
    """``run_worker`` until the queues are empty (Resque's ``interval`` 0)."""
    config = WorkerConfig(QueueSpec.parse(queues), redis_url=redis_url, interval=0)
    assert run_worker(config, registry) == 0


def test_run_worker_with_an_empty_registry_says_how_to_register(
    r: redis.Redis, redis_url: str, in_process: pytest.LogCaptureFixture
) -> None:
    known_queues(r, "high")
    payload = json.dumps({"class": "Archive", "args": [1]})
    r.rpush(NS + "queue:high", payload, payload)
    drain(redis_url, "high,hihg", Registry())
    said = warnings(in_process)
    assert said.count(NO_HANDLERS_PYTHON) == 1
    assert said.count(unknown_class_python("Archive")) == 1  # two jobs, one line
    assert said.count(typo("hihg", "high")) == 1
    assert len(said) == 3, said
    assert [json.loads(e)["error"] for e in r.lrange(NS + "failed", 0, -1)] == [
        "uninitialized constant Archive"] * 2


def test_run_worker_with_a_handler_and_known_queues_names_only_the_unknown_class(
    r: redis.Redis, redis_url: str, in_process: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    registry.register("Archive", lambda repo: None)
    known_queues(r, "high")
    r.rpush(NS + "queue:high", json.dumps({"class": "Archive", "args": [1]}),
            json.dumps({"class": "Archvie", "args": [1]}))
    r.rpush(NS + "queue:fresh", json.dumps({"class": "Archive", "args": [2]}))  # not in the set
    drain(redis_url, "high,fresh", registry)
    assert warnings(in_process) == [unknown_class_python("Archvie")]
    assert r.llen(NS + "failed") == 1 and r.llen(NS + "queue:fresh") == 0
