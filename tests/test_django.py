"""The Django integration with real Django on SQLite: ``manage.py pyresque_work`` (every
``pyresque-work`` flag, ``settings.PYRESQUE`` as defaults), ``jobs.py`` autodiscovery,
``enqueue_on_commit``, and database connections closed around sync and async jobs.

The project is ``tests/apps/django_site`` (app ``shop``); its SQLite file lives in a temporary
directory. This process sets Django up once for the web side (writes, ``enqueue_on_commit``,
a view); the worker is always ``manage.py pyresque_work`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from worker_helpers import APPS, worker_env

from pyresqueworker import Client
from pyresqueworker.cli._options import NAMESPACE_ENV, REDIS_ENV
from pyresqueworker.cli.work import work

django = pytest.importorskip("django")

SITE = APPS / "django_site"
SITE_ENV = ("DJANGO_SETTINGS_MODULE", "DJANGO_SITE_DB", "DJANGO_SITE_REDIS")
# Options every Django command has, beside pyresque-work's own.
DJANGO_FLAGS = {"--help", "--version", "--verbosity", "--settings", "--pythonpath",
                "--traceback", "--no-color", "--force-color", "--skip-checks"}


@pytest.fixture(scope="module")
def site_db(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Path]:
    """Django set up in this process on a fresh SQLite file with the shop's table."""
    from django.core.management import call_command

    db = tmp_path_factory.mktemp("django_site") / "site.sqlite3"
    sys.path.insert(0, str(SITE))
    os.environ.update(zip(SITE_ENV, ("site_config.settings", str(db), redis_server.url)))
    try:
        django.setup()  # reads the settings, and with them the environment, once
        call_command("migrate", run_syncdb=True, verbosity=0)
    finally:
        for name in SITE_ENV:
            os.environ.pop(name, None)
    yield db
    from django.db import connections

    connections.close_all()


@pytest.fixture
def web(site_db: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The web side reads settings.PYRESQUE alone (no REDIS_URL from the test run)."""
    from django.conf import settings
    from django.test import override_settings

    for name in (*REDIS_ENV, NAMESPACE_ENV):
        monkeypatch.delenv(name, raising=False)
    with override_settings(PYRESQUE={**settings.PYRESQUE, "url": redis_url}):
        yield


def manage(db: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py <args>`` for the site; Redis comes from settings.PYRESQUE only."""
    env = worker_env(redis_url, dict(zip(SITE_ENV, ("site_config.settings", str(db),
                                                     redis_url))))
    for name in REDIS_ENV:
        env.pop(name, None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=str(SITE), env=env,
                          capture_output=True, text=True, timeout=120)


def work_until_empty(db: Path, redis_url: str, *args: str) -> None:
    result = manage(db, redis_url, "pyresque_work", "--exit-on-complete", *args)
    assert result.returncode == 0, result.stdout + result.stderr


def records(r: redis.Redis, key: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in r.lrange(f"site:{key}", 0, -1)]


def flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", help_text))


# -- the management command ------------------------------------------------------------------


def test_manage_py_help_lists_every_pyresque_work_flag(site_db: Path, redis_url: str) -> None:
    result = manage(site_db, redis_url, "pyresque_work", "--help")
    assert result.returncode == 0, result.stderr
    ours = flags(CliRunner().invoke(work, ["--help"]).output)
    assert {"--queues", "--concurrency", "--execution", "--no-periodic"} <= ours
    assert ours - flags(result.stdout) == set()
    assert flags(result.stdout) - ours <= DJANGO_FLAGS


def test_settings_give_redis_namespace_and_queues_and_jobs_py_is_discovered(
        site_db: Path, redis_url: str, r: redis.Redis) -> None:
    shop = Client(redis_url, namespace="shop:")
    shop.enqueue_to("orders", "Shop::Ping", "orders")
    shop.enqueue_to("checks", "Shop::Ping", "checks")
    shop.enqueue_to("elsewhere", "Shop::Ping", "not in settings' queues")
    Client(redis_url).enqueue_to("checks", "Shop::Ping", "other namespace")

    work_until_empty(site_db, redis_url)  # no --redis, --namespace, --queues or --app

    assert sorted(entry["tag"] for entry in records(r, "pinged")) == ["checks", "orders"]
    assert r.llen("shop:queue:elsewhere") == 1
    assert r.llen("resque:queue:checks") == 1


def test_flags_override_settings(site_db: Path, redis_url: str, r: redis.Redis) -> None:
    shop = Client(redis_url, namespace="shop:")
    shop.enqueue_to("orders", "Shop::Ping", "orders")
    shop.enqueue_to("checks", "Shop::Ping", "checks")

    work_until_empty(site_db, redis_url, "--queues", "checks")

    assert [entry["tag"] for entry in records(r, "pinged")] == ["checks"]
    assert r.llen("shop:queue:orders") == 1


def test_a_bad_flag_is_a_usage_error(site_db: Path, redis_url: str) -> None:
    result = manage(site_db, redis_url, "pyresque_work", "--concurrency", "0")
    assert result.returncode == 2
    assert "CommandError" in result.stderr and "--concurrency" in result.stderr


# -- enqueue on commit -----------------------------------------------------------------------


def test_a_job_enqueued_in_a_transaction_sees_the_row_written_there(
        web: None, site_db: Path, redis_url: str, r: redis.Redis) -> None:
    from django.db import transaction
    from django.test import Client as WebClient
    from shop.models import Order

    from pyresqueworker.contrib.django import enqueue_on_commit

    with transaction.atomic():
        tea = Order.objects.create(name="tea")
        enqueue_on_commit("Shop::CheckOrder", tea.pk)
        assert r.llen("shop:queue:orders") == 0  # not before the row is committed
    assert r.llen("shop:queue:orders") == 1

    with pytest.raises(RuntimeError), transaction.atomic():
        ghost = Order.objects.create(name="ghost")
        enqueue_on_commit("Shop::CheckOrder", ghost.pk)
        raise RuntimeError("rolled back")
    assert r.llen("shop:queue:orders") == 1  # a rolled back transaction enqueues nothing

    response = WebClient().post("/orders/", {"name": "jam"})  # the view does the same
    assert response.status_code == 200
    jam = response.json()["id"]

    work_until_empty(site_db, redis_url)

    assert records(r, "checked") == [{"id": tea.pk, "name": "tea"}, {"id": jam, "name": "jam"}]


def test_enqueue_to_on_commit_uses_the_database_alias_given(
        web: None, r: redis.Redis) -> None:
    from django.db import transaction

    from pyresqueworker.contrib.django import enqueue_to_on_commit

    with transaction.atomic(using="default"):
        enqueue_to_on_commit("checks", "Shop::Ping", "x", using="default")
        assert r.llen("shop:queue:checks") == 0
    assert r.llen("shop:queue:checks") == 1


# -- connections around jobs -----------------------------------------------------------------


@pytest.mark.parametrize("execution", ["threads", "asyncio"])
def test_database_connections_are_closed_around_sync_and_async_jobs(
        site_db: Path, redis_url: str, r: redis.Redis, execution: str) -> None:
    shop = Client(redis_url, namespace="shop:")
    order = ["sync-1", "async-1", "sync-2", "async-2", "sync-3"]
    for tag in order:
        kind = "Shop::SyncConnection" if tag.startswith("sync") else "Shop::AsyncConnection"
        shop.enqueue_to("conn", kind, tag)

    work_until_empty(site_db, redis_url, "--queues", "conn", "--execution", execution)

    assert r.llen("shop:failed") == 0, r.lrange("shop:failed", 0, -1)  # no SynchronousOnly...
    seen = records(r, "conn")
    assert [entry["tag"] for entry in seen] == order
    for index, entry in enumerate(seen):
        # Every connection an earlier job used (in its thread, or in its sync_to_async
        # thread) was closed by the time the next job ran.
        assert entry["earlier_closed"] == [True] * index, entry
    assert all(entry["fresh"] for entry in seen if entry["tag"].startswith("sync"))


# -- settings --------------------------------------------------------------------------------


def test_settings_keys_are_flags_and_lists_or_weights_become_queue_specs(web: None) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from pyresqueworker.contrib.django.conf import worker_defaults

    given = {"url": "redis://127.0.0.9/2", "queues": {"high": 2, "low": 1}, "job-timeout": 5,
             "app": "billing.extra_jobs", "exit_on_complete": True, "max-memory": 512}
    with override_settings(PYRESQUE=given):
        assert worker_defaults() == {"redis_url": "redis://127.0.0.9/2", "queues": "high=2,low=1",
                                     "job_timeout": 5, "apps": ["billing.extra_jobs"],
                                     "exit_on_complete": True, "max_memory_mb": 512}
    with override_settings(PYRESQUE={"queues": ["a", "b"]}):
        assert worker_defaults() == {"queues": "a,b"}
    with override_settings(PYRESQUE={"concurency": 4}), pytest.raises(
            ImproperlyConfigured, match=r"\['concurency'\] is not an option"):
        worker_defaults()


def test_the_client_resolves_redis_and_namespace_as_the_worker_does(
        web: None, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings
    from django.test import override_settings

    from pyresqueworker.contrib.django import get_client

    assert get_client().keys.ns == "shop:"  # settings.PYRESQUE
    assert get_client() is get_client()
    monkeypatch.setenv(NAMESPACE_ENV, "from-env:")  # the environment wins, as for the worker
    with override_settings(PYRESQUE={**settings.PYRESQUE}):  # a settings change: a new client
        assert get_client().keys.ns == "from-env:"


def test_a_bad_setting_is_a_usage_error(site_db: Path, redis_url: str) -> None:
    result = manage(site_db, redis_url, "pyresque_work", "--settings",
                    "site_config.bad_settings")
    assert result.returncode == 2
    assert "PYRESQUE['concurency'] is not an option of pyresque_work" in result.stderr
