"""What an operator sees with ``pyresque``: queues pushed by hand, paused workers, a pause of a
queue nobody uses, and a long-running command's process title without the Redis password."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from admin_helpers import ROOT, invoke, invoke_json, one_error_line
from conftest import free_port
from worker_helpers import wait_until

from pyresqueworker.client._client import Client
from pyresqueworker.protocol import wire

WORKER = "box:4242:mail,low"


def register(r: redis.Redis, worker_id: str = WORKER) -> None:
    """A registered, idle worker with a fresh heartbeat."""
    r.sadd("resque:workers", worker_id)
    r.hset("resque:workers:heartbeat", worker_id, wire.heartbeat_value(int(r.time()[0])))


# -- queues pushed by hand --------------------------------------------------------------------


def test_a_queue_pushed_by_hand_is_listed_and_counted(redis_url: str, r: redis.Redis) -> None:
    # What the README's "Use" section does: RPUSH without SADD resque:queues.
    r.rpush("resque:queue:low", '{"class":"Archive","args":[1]}', '{"class":"Archive","args":[2]}')
    assert not r.smembers("resque:queues")
    [row] = invoke_json(redis_url, "queues")
    assert (row["name"], row["size"]) == ("low", 2)
    assert re.search(r"^low\s+2\s+-$", invoke(redis_url, "queues").stdout, re.M)
    info = invoke_json(redis_url, "info")
    assert (info["pending"], info["queues"]) == (2, 1)
    assert re.search(r"^pending\s+2$", invoke(redis_url, "info").stdout, re.M)


# -- paused workers ---------------------------------------------------------------------------


def test_workers_paused_globally_or_by_usr2_show_paused(redis_url: str, r: redis.Redis,
                                                        client: Client) -> None:
    register(r)
    register(r, "box:4243:high")
    assert [row["state"] for row in invoke_json(redis_url, "workers")] == ["idle", "idle"]
    r.sadd("resque:pyresque:paused-workers", WORKER)  # what a USR2-paused worker publishes
    assert [row["state"] for row in invoke_json(redis_url, "workers")] == ["paused", "idle"]
    text = invoke(redis_url, "workers").stdout
    assert re.search(rf"^{WORKER}\s+box\s+4242\s+mail,low\s+paused\s", text, re.M)
    assert "pause-all-workers" not in text
    client.pause_all()
    assert [row["state"] for row in invoke_json(redis_url, "workers")] == ["paused", "paused"]
    text = invoke(redis_url, "workers").stdout
    assert re.search(r"^box:4243:high\s+box\s+4243\s+high\s+paused\s", text, re.M)
    assert "all workers are paused (pause-all-workers)" in text


# -- pausing a queue that does not exist ------------------------------------------------------


def test_pause_refuses_a_queue_nobody_uses_unless_forced(redis_url: str, r: redis.Redis,
                                                         client: Client) -> None:
    result = invoke(redis_url, "pause", "mial")
    assert result.exit_code == 1 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert "no queue 'mial'" in line and "--force pauses it anyway" in line
    assert client.paused_queues() == []
    assert invoke(redis_url, "--json", "pause", "mial").exit_code == 1
    result = invoke(redis_url, "pause", "mial", "--force")
    assert result.exit_code == 0 and "paused queue mial" in result.stdout
    assert client.paused_queues() == ["mial"]


def test_pause_names_the_closest_known_queue(redis_url: str, r: redis.Redis,
                                             client: Client) -> None:
    r.sadd("resque:queues", "mail", "low")
    result = invoke(redis_url, "pause", "mial")
    assert result.exit_code == 1 and client.paused_queues() == []
    line = one_error_line(result.stderr)
    assert line.endswith("no worker watches it); did you mean 'mail'? --force pauses it anyway")


@pytest.mark.parametrize("make", ["list", "set", "worker"])
def test_pause_takes_a_queue_with_jobs_in_the_set_or_watched(redis_url: str, r: redis.Redis,
                                                              client: Client, make: str) -> None:
    if make == "list":
        r.rpush("resque:queue:mail", '{"class":"Mailer","args":[]}')
    elif make == "set":
        r.sadd("resque:queues", "mail")
    else:
        register(r)  # watches mail and low
    result = invoke(redis_url, "pause", "mail")
    assert result.exit_code == 0, result.stderr
    assert client.paused_queues() == ["mail"]


# -- the process title of a long-running command ----------------------------------------------


@pytest.fixture
def acl_user(r: redis.Redis) -> Iterator[tuple[str, str]]:
    """A Redis ACL user with a password, so the URL carries one; removed afterwards."""
    user, password = "pyresque-web-test", "hunter2-Secret"
    r.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    yield user, password
    r.execute_command("ACL", "DELUSER", user)


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/cmdline")
def test_web_hides_the_redis_password_from_ps(redis_url: str,
                                              acl_user: tuple[str, str]) -> None:
    user, password = acl_user
    secret_url = redis_url.replace("redis://", f"redis://{user}:{password}@")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RESQUE_PROCLINE_PREFIX"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyresqueworker.cli.admin.cli", "--redis", secret_url, "web",
         "--port", str(port)], env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        shown = redis_url.replace("redis://", f"redis://{user}:***@")

        def new_title() -> str:
            assert proc.poll() is None, proc.communicate()[1]
            title = cmdline(proc.pid)
            return title if password not in title else ""

        title = wait_until(new_title, "the title without the password", timeout=15)
        assert title == f"pyresque web 127.0.0.1:{port} {shown}"
        assert proc.poll() is None  # still serving, under its new title
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert password not in err
