"""The dashboard in a real browser: headless Chromium (Debian's) driven by Selenium.

The dashboard runs in a thread against the real redis-server fixture, with data written by
Ruby (the golden files) and by Python (the client, and a live ``pyresque-work`` whose jobs
fail, succeed and record history). Each test clicks what a person would and then reads Redis.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from web_helpers import (
    RUBY_WORKER,
    XSS_IMG,
    XSS_SCRIPT,
    hostile_failure,
    running_dashboard,
    seed_ruby_golden,
)
from worker_helpers import wait_failures, wait_ran, wait_started, wait_until

from pyresqueworker import Client
from pyresqueworker.protocol import wire

NS = "resque:"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra installs selenium
    webdriver = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [name for name, found in [("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
                                        ("selenium", webdriver)] if not found]
    if missing:
        reason = (f"{', '.join(missing)} not installed (apt-get install chromium "
                  "chromium-driver; pip install selenium)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(r)


@pytest.fixture
def site(client: Client) -> Iterator[str]:
    """The dashboard on a free loopback port, as ``serve`` configures it."""
    with running_dashboard(client) as url:
        yield url


def open_page(browser: WebDriver, url: str, heading: str) -> str:
    """Load ``url``; check the heading, no error page and no console error; return the text."""
    browser.get(url)
    h1 = browser.find_element(By.TAG_NAME, "h1").text
    assert h1.startswith(heading), (url, h1)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Internal Server Error" not in text and "Traceback" not in text
    # CSP violations and script errors are logged as SEVERE; the browser's own favicon
    # request is the only 404 a page may cause.
    errors = [entry["message"] for entry in browser.get_log("browser")
              if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]]
    assert errors == [], errors
    return text


def click_and_wait(browser: WebDriver, css: str) -> str:
    """Click a button that posts a form; wait for the flash message of the next page."""
    old_page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, css).click()

    def page_replaced(_driver: WebDriver) -> bool:
        # Chromium reports a node of the page being replaced either as stale or, mid-swap, as
        # "does not belong to the document": both mean the old page is gone.
        try:
            old_page.is_enabled()
        except WebDriverException:  # StaleElementReferenceException included
            return True
        return False

    WebDriverWait(browser, 10).until(page_replaced)
    flash = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "p.flash")))
    return str(flash.text)


def no_alert(browser: WebDriver) -> bool:
    try:
        browser.switch_to.alert.text  # noqa: B018 (raises when there is no alert)
    except NoAlertPresentException:
        return True
    return False


def test_every_page_shows_ruby_and_python_workers_side_by_side(
        browser: WebDriver, site: str, r: redis.Redis, client: Client, spawn_worker: Any) -> None:
    worker = spawn_worker("--queues", "pyq", "--history", "7d")
    [python_worker] = worker.wait_registered()
    client.enqueue_to("pyq", "Boom", "python failed")          # a real Python failure
    job_id = client.enqueue_active_job("HelloJob", "world", queue="pyq")  # unknown: fails
    client.enqueue_to("pyq", "Record", "ok")
    wait_failures(r, 2)
    wait_until(lambda: int(r.zcard(NS + "pyresque:history")) >= 3, "3 history records")
    client.enqueue_to("pyq", "Hold", "web")                   # keeps the Python worker busy
    wait_started(r)
    seed_ruby_golden(r)                                       # a busy Ruby worker, 2 failures
    client.enqueue_to("mail", "Mailer", 7, "welcome")
    client.enqueue_active_job("HelloJob", "queued", queue="default")
    client.enqueue_in(600, "Later", 1, queue="low")
    client.schedules.add("nightly", "0 3 * * *", "Report", ["daily"], queue="reports")
    try:
        text = open_page(browser, site + "/", "Overview")
        assert "PROCESSED" in text.upper() and "Busiest queues" in text
        assert "RubySlow" in text and "Hold" in text            # both running jobs
        text = open_page(browser, site + "/workers", "Workers")
        assert RUBY_WORKER in text and python_worker in text
        assert "RubySlow" in text and "Hold" in text
        text = open_page(browser, site + "/queues", "Queues")
        assert "mail" in text and "default" in text
        assert "Mailer" in open_page(browser, site + "/queues/mail", "Queue mail")
        assert "HelloJob" in open_page(browser, site + "/queues/default", "Queue default")
        text = open_page(browser, site + "/failed", "Failed jobs")
        assert "RubyBoom" in text and "worker_jobs.JobError" in text
        assert "uninitialized constant HelloJob" in text
        assert "Later" in open_page(browser, site + "/delayed", "Delayed jobs")
        assert "nightly" in open_page(browser, site + "/schedules", "Periodic schedules")
        assert "stat:processed" in open_page(browser, site + "/stats", "Stats")
        text = open_page(browser, site + "/history", "Job history")
        assert "Record" in text and "Boom" in text
        search = browser.find_element(By.NAME, "id")
        search.send_keys(job_id)
        search.submit()
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("id="))
        rows = browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
        assert len(rows) == 1 and "HelloJob" in rows[0].text and job_id in rows[0].text
    finally:
        r.set("test:release:web", "1")


def test_retry_and_remove_failed_jobs_by_clicking(browser: WebDriver, site: str,
                                                  r: redis.Redis) -> None:
    ruby = seed_ruby_golden(r)
    open_page(browser, site + "/failed", "Failed jobs")
    # Entry 0 is Ruby's RubyBoom: Retry pushes its job back and marks the entry.
    flash = click_and_wait(browser, "#retry-0")
    assert flash == "Failure #0 was requeued."
    assert r.lrange(NS + "queue:high", 0, -1) == [b'{"class":"RubyBoom","args":[{"k":"v"}]}']
    entries = r.lrange(NS + "failed", 0, -1)
    assert len(entries) == 2 and b'"retried_at":"' in entries[0] and entries[1] == ruby[1]
    assert "retried " in browser.find_element(By.ID, "failure-0").text
    # Entry 1 is the NoSuchClass failure: Remove drops it and nothing else.
    flash = click_and_wait(browser, "#remove-1")
    assert flash == "Failure #1 was removed."
    entries = r.lrange(NS + "failed", 0, -1)
    assert len(entries) == 1 and b"RubyBoom" in entries[0]
    assert browser.find_elements(By.ID, "failure-1") == []


def test_pause_a_queue_by_clicking(browser: WebDriver, site: str, client: Client) -> None:
    client.enqueue_to("mail", "Mailer", 1)
    client.enqueue_to("other", "Job", 1)
    open_page(browser, site + "/queues", "Queues")
    flash = click_and_wait(browser, 'tr[data-queue="mail"] button')
    assert flash.startswith("Queue mail is paused")
    assert client.paused_queues() == ["mail"]
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-queue="mail"]')
    assert "paused" in row.text and "Resume" in row.text
    click_and_wait(browser, 'tr[data-queue="mail"] button')
    assert client.paused_queues() == []


def test_hostile_payloads_are_shown_as_text(browser: WebDriver, site: str, r: redis.Redis,
                                            client: Client) -> None:
    r.rpush(NS + "failed", hostile_failure())
    client.enqueue_to("hostile", XSS_SCRIPT, XSS_IMG)
    open_page(browser, site + "/failed", "Failed jobs")
    card = browser.find_element(By.ID, "failure-0")
    for summary in card.find_elements(By.TAG_NAME, "summary"):
        summary.click()  # open Arguments and Backtrace
    text = card.text
    assert XSS_SCRIPT in text and "message " + XSS_SCRIPT in text
    assert XSS_IMG.replace('"', '\\"') in text        # JSON-escaped inside the args
    assert f"app/{XSS_IMG}.py:1:in `x'" in text       # the backtrace line, verbatim
    assert "</pre><b>bold</b>" in text and "Evil<Error>" in text
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img, main b") == []
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-pwned") is None
    assert no_alert(browser)
    text = open_page(browser, site + "/queues/hostile", "Queue hostile")
    assert XSS_SCRIPT in text
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-pwned") is None
    assert no_alert(browser)


def test_history_times_stay_on_one_line(browser: WebDriver, site: str, r: redis.Redis) -> None:
    keys = wire.Keys()
    long_args = ["x" * 400, "y" * 400]  # a wide job column squeezes the others
    for n in range(3):
        record = wire.dumps({
            "finished_at": 1_700_000_000.0 + n, "outcome": "failure", "duration_ms": 3.5,
            "queue": "default", "class": "Archive", "worker": "a-long-host-name:4242:default",
            "job_id": None, "error": "RuntimeError: " + "boom " * 60, "payload_bytes": 10,
            "payload": {"class": "Archive", "args": long_args}})
        r.zadd(keys.history, {record: 1_700_000_000.0 + n})
    open_page(browser, site + "/history", "Job history")
    cells = browser.find_elements(By.CSS_SELECTOR, "#history td.time")
    assert len(cells) == 3
    for cell in cells:
        lines = browser.execute_script(
            "const range = document.createRange(); range.selectNodeContents(arguments[0]);"
            "return range.getClientRects().length;", cell)
        assert lines == 1, cell.text


def test_charts_show_the_jobs_a_worker_ran(browser: WebDriver, site: str, r: redis.Redis,
                                           client: Client, spawn_worker: Any) -> None:
    spawn_worker("--queues", "charted")
    wait_until(lambda: r.zcard(NS + "pyresque:series:minutes"), "the worker's first sample")
    first = json.loads(r.zrange(NS + "pyresque:series:minutes", 0, 0)[0])
    for n in range(4):
        client.enqueue_to("charted", "Record", n)
    client.enqueue_to("charted", "Boom", "charted")
    wait_ran(r, 4)
    wait_failures(r, 1)
    processed = int(r.get(NS + "stat:processed") or 0) - first["p"]
    failed = int(r.get(NS + "stat:failed") or 0) - first["f"]
    assert processed >= 5 and failed >= 1
    for page, heading in (("/", "Overview"), ("/charts?hours=1", "Charts")):
        open_page(browser, site + page, heading)
        svg = browser.find_element(By.CSS_SELECTOR, "#chart-jobs svg")
        desc = svg.find_element(By.TAG_NAME, "desc").get_attribute("textContent")
        assert f"{processed} processed, {failed} failed" in desc, desc
        bars = svg.find_elements(By.CSS_SELECTOR, "g.bar rect.processed")
        assert bars and all(float(bar.get_attribute("height")) > 0 for bar in bars)
        assert svg.size["width"] > 300 and svg.size["height"] > 50  # drawn, not collapsed
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-depth svg polyline, "
                                                  "#chart-depth p.empty")
