"""The dashboard at the WSGI level (no browser): pages, actions, CSRF, auth, escaping, errors."""

from __future__ import annotations

import html
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import free_port
from web_helpers import (
    RUBY_WORKER,
    XSS_IMG,
    XSS_SCRIPT,
    WsgiClient,
    hostile_failure,
    running_dashboard,
    seed_ruby_golden,
)

from pyresqueworker import Client
from pyresqueworker.protocol import wire
from pyresqueworker.web import make_app, serve
from pyresqueworker.web.actions import ACTIONS
from pyresqueworker.web.app import Dashboard
from pyresqueworker.web.meter import ThroughputMeter
from pyresqueworker.web.security import LOOPBACK_NAMES

NS = "resque:"
PAGES = [
    ("/", "Overview"), ("/queues", "Queues"), ("/workers", "Workers"),
    ("/failed", "Failed jobs"), ("/delayed", "Delayed jobs"),
    ("/schedules", "Periodic schedules"), ("/history", "Job history"), ("/stats", "Stats"),
]


def flashes(body: str) -> list[str]:
    found = re.findall(r'<p class="flash \w+" role="status">(.*?)</p>', body)
    return [html.unescape(text) for text in found]


def seed_failures(r: redis.Redis, n: int) -> list[bytes]:
    entries = []
    for i in range(n):
        entry = wire.failure_entry(
            failed_at_text=wire.failed_at(), payload={"class": "PyJob", "args": [i]},
            exception="ValueError", error=f"bad {i}", backtrace=["app/jobs.py:3:in `run'"],
            worker="h:1:q", queue="q")
        r.rpush(NS + "failed", entry)
        entries.append(entry.encode())
    return entries


# -- pages --------------------------------------------------------------------------------------


def test_every_page_shows_python_and_ruby_data(r: redis.Redis, client: Client,
                                               web: WsgiClient) -> None:
    seed_ruby_golden(r)
    client.enqueue_to("mail", "Mailer", 7, "welcome")
    job_id = client.enqueue_active_job("HelloJob", "world", queue="default")
    client.enqueue_in(600, "Later", 1, queue="low")
    client.schedules.add("nightly", "0 3 * * *", "Report", ["daily"], queue="reports",
                         description="the nightly report")
    for path, heading in PAGES:
        status, headers, body = web.get(path)
        assert status == "200 OK", (path, body)
        assert f"<h1>{heading}" in body
        assert headers["Content-Type"] == "text/html; charset=utf-8"
    body = web.get("/workers")[2]
    assert RUBY_WORKER in body and "RubySlow" in body and "working" in body
    body = web.get("/failed")[2]
    assert "RuntimeError" in body and "RubyBoom" in body
    assert "uninitialized constant NoSuchClass" in body
    assert "/gems/resque-3.0.0/lib/resque.rb:92:in `constantize&#39;" in body
    body = web.get("/queues/default")[2]
    assert "HelloJob" in body and "ActiveJob" in body and job_id in body
    assert "Mailer" in web.get("/queues/mail")[2]
    assert "Later" in web.get("/delayed")[2]
    body = web.get("/schedules")[2]
    assert "nightly" in body and "0 3 * * *" in body and "the nightly report" in body
    body = web.get("/stats")[2]
    assert "stat:processed" in body and "Redis version" in body
    body = web.get("/")[2]
    assert re.search(r'id="processed">2<', body)


def test_queue_latency_is_the_age_of_the_oldest_activejob(client: Client) -> None:
    client.enqueue_active_job("HelloJob", "world", queue="default")
    client.enqueue_to("plain", "NoTimestamps", 1)
    later = time.time() + 3600
    web = WsgiClient(Dashboard(client, clock=lambda: later))
    body = web.get("/queues")[2]
    rows = dict(re.findall(r'<tr data-queue="(\w+)">.*?</td>\s*<td class="num">\d+</td>\s*'
                           r"<td>([^<]*)</td>", body, re.S))
    assert rows == {"default": "60 min", "plain": "-"}


def test_throughput_is_the_processed_delta_between_samples(r: redis.Redis,
                                                           client: Client) -> None:
    now = [1_000_000.0]
    web = WsgiClient(Dashboard(client, clock=lambda: now[0]))
    r.set(NS + "stat:processed", 10)
    assert 'id="throughput">-<' in web.get("/")[2]
    now[0] += 10
    r.set(NS + "stat:processed", 40)
    assert 'id="throughput">3.0/s<' in web.get("/")[2]


def test_meter_restarts_when_the_counter_is_reset() -> None:
    meter = ThroughputMeter(window=60)
    assert meter.observe(100, 0.0) is None
    rate = meter.observe(160, 30.0)
    assert rate is not None and rate.per_second == 2.0
    assert meter.observe(5, 40.0) is None  # stat:processed was reset
    rate = meter.observe(25, 50.0)
    assert rate is not None and rate.per_second == 2.0


def test_meter_keeps_only_the_window() -> None:
    meter = ThroughputMeter(window=60)
    meter.observe(0, 0.0)
    meter.observe(600, 100.0)  # a burst long ago
    for t in range(110, 221, 10):
        rate = meter.observe(600 + (t - 100), float(t))
    assert rate is not None and rate.per_second == pytest.approx(1.0)
    assert rate.window <= 70


def test_history_search_by_id_and_class(r: redis.Redis, client: Client, web: WsgiClient,
                                        spawn_worker: Any) -> None:
    worker = spawn_worker("--queues", "hist", "--history", "7d")
    worker.wait_registered()
    job_id = client.enqueue_active_job("HelloJob", "world", queue="hist")
    client.enqueue_to("hist", "Record", "<b>plain</b>")
    deadline = time.monotonic() + 15
    while int(r.zcard(NS + "pyresque:history")) < 2:
        assert time.monotonic() < deadline, "the worker wrote no history"
        time.sleep(0.05)
    body = web.get("/history")[2]
    assert "2 records" in body and "Record" in body and "&lt;b&gt;plain&lt;/b&gt;" in body
    body = web.get(f"/history?id={job_id}")[2]
    assert job_id in body and "HelloJob" in body and "&lt;b&gt;plain" not in body
    body = web.get("/history?class=Record")[2]
    assert "&lt;b&gt;plain" in body and "HelloJob</span>" not in body
    assert "No record of a job with id nope" in web.get("/history?id=nope")[2]


# -- escaping -----------------------------------------------------------------------------------


def test_payloads_are_never_rendered_as_markup(r: redis.Redis, client: Client,
                                               web: WsgiClient) -> None:
    r.rpush(NS + "failed", hostile_failure())
    r.rpush(NS + "failed", b"<i>not json</i>\xff")
    client.enqueue_to("x<svg onload=alert(1)>", XSS_SCRIPT, XSS_IMG)
    client.enqueue_in(600, XSS_SCRIPT, XSS_IMG, queue="<q>")
    r.sadd(NS + "workers", "h<u>:1:q<s>")
    r.set(NS + "worker:h<u>:1:q<s>", json.dumps(
        {"queue": "q", "run_at": "2026-11-23T07:35:33Z",
         "payload": {"class": XSS_SCRIPT, "args": [XSS_IMG]}}))
    client.schedules.add("evil", "* * * * *", "Cls", [XSS_SCRIPT], queue="q",
                         description=XSS_IMG)
    pages = ["/failed", "/queues", "/queues/x%3Csvg%20onload%3Dalert(1)%3E", "/delayed",
             "/workers", "/", "/schedules"]
    for path in pages:
        status, _, body = web.get(path)
        assert status == "200 OK", path
        for markup in ("<script>alert", "<img", "<svg", "<b>bold", "<u>", "<s>", "<i>not",
                       "<Error>", "<q>"):
            assert markup not in body, (path, markup)
    body = web.get("/failed")[2]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=&#34;document.body" in body
    assert "could not be parsed" in body and "&lt;i&gt;not json&lt;/i&gt;\ufffd" in body
    assert "/queues/x%3Csvg%20onload%3Dalert%281%29%3E" in web.get("/queues")[2]


def test_odd_data_from_any_client_never_breaks_a_page(r: redis.Redis, web: WsgiClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for item in [b"\xff\xfe not utf-8", deep, b"[1,2]", b'"text"', b'{"class":7,"args":5}',
                 b"x" * 3_000_000]:
        r.rpush(NS + "queue:odd", item)
        r.rpush(NS + "failed", item)
        r.rpush(NS + "delayed:2000000000", item)
    r.sadd(NS + "queues", "odd")
    r.zadd(NS + "delayed_queue_schedule", {"2000000000": 2000000000})
    r.rpush(NS + "failed", '{"payload":null,"backtrace":"not a list","error":{"a":1}}')
    r.sadd(NS + "workers", "h:1:odd", "no-colons", "h:2:odd2")
    r.set(NS + "worker:h:1:odd", b"{not json")
    r.set(NS + "worker:h:2:odd2", '{"queue":5,"run_at":[],"payload":"x"}')
    r.hset(NS + "workers:heartbeat", mapping={"h:1:odd": "yesterday", "h:2:odd2": "9" * 40})
    for path in ["/", "/queues", "/queues/odd", "/failed", "/delayed", "/delayed/2000000000",
                 "/workers", "/stats"]:
        status, _, body = web.get(path)
        assert status == "200 OK", (path, body[-300:])
        assert len(body) < 1_000_000, path  # 3 MB items are cut, not copied into the page
    body = web.get("/failed")[2]
    # not UTF-8, too deep, an array, a string, not JSON; the {"class":7} object is shown
    assert body.count("could not be parsed") == 5
    assert "not a list" in body


def test_security_headers_on_every_response(web: WsgiClient) -> None:
    for path in ["/", "/failed", "/nope", "/static/dashboard.css", "/action/failed/clear"]:
        _, headers, _ = web.get(path)
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"


# -- actions: methods, CSRF, origin -------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(ACTIONS))
def test_get_on_an_action_is_405_and_changes_nothing(r: redis.Redis, web: WsgiClient,
                                                     path: str) -> None:
    seed_failures(r, 1)
    status, headers, body = web.get(path + "?index=0")
    assert status == "405 Method Not Allowed" and headers["Allow"] == "POST"
    assert "Traceback" not in body
    assert r.llen(NS + "failed") == 1


def test_pages_refuse_post(web: WsgiClient) -> None:
    status, headers, _ = web.post("/failed", {})
    assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("token", [None, "", "0" * 64, "not-hex"])
def test_an_action_without_the_right_token_is_refused(r: redis.Redis, web: WsgiClient,
                                                      token: Any) -> None:
    seed_failures(r, 2)
    web.token()
    form = {"index": "0"} if token is None else {"index": "0", "csrf": token}
    status, _, body = web.post("/action/failed/clear", form)
    assert status == "403 Forbidden" and "reload the page" in body
    assert r.llen(NS + "failed") == 2


def test_a_token_works_only_with_its_own_session(r: redis.Redis, client: Client) -> None:
    seed_failures(r, 1)
    app = make_app(client)
    alice, mallory = WsgiClient(app), WsgiClient(app)
    alices_token = alice.token()
    mallory.token()  # a session of her own
    assert mallory.post("/action/failed/clear", {"csrf": alices_token})[0] == "403 Forbidden"
    assert r.llen(NS + "failed") == 1
    assert alice.post("/action/failed/clear", {"csrf": alices_token})[0] == "303 See Other"
    assert r.llen(NS + "failed") == 0


def test_a_token_from_another_process_secret_is_refused(r: redis.Redis, client: Client) -> None:
    seed_failures(r, 1)
    old = WsgiClient(make_app(client, secret=b"a" * 32))
    token = old.token()
    restarted = WsgiClient(make_app(client, secret=b"b" * 32))
    restarted.cookies = dict(old.cookies)
    assert restarted.post("/action/failed/clear", {"csrf": token})[0] == "403 Forbidden"
    assert r.llen(NS + "failed") == 1


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Referer": "http://evil.example/page"},
    {"Origin": "http://127.0.0.1:5041"},
])
def test_a_cross_site_post_is_refused_even_with_a_token(r: redis.Redis, web: WsgiClient,
                                                        headers: dict[str, str]) -> None:
    seed_failures(r, 1)
    token = web.token()
    status, _, _ = web.post("/action/failed/clear", {"csrf": token}, headers=headers)
    assert status == "403 Forbidden"
    assert r.llen(NS + "failed") == 1


def test_same_origin_post_is_accepted(r: redis.Redis, web: WsgiClient) -> None:
    seed_failures(r, 1)
    token = web.token()
    status, headers, _ = web.post("/action/failed/clear", {"csrf": token},
                                  headers={"Origin": "http://127.0.0.1:5040"})
    assert status == "303 See Other" and headers["Location"] == "/failed"
    assert r.llen(NS + "failed") == 0
    assert flashes(web.get("/failed")[2]) == ["1 failures were cleared."]


@pytest.mark.parametrize("back, location", [
    ("/queues?start=5", "/queues?start=5"),
    ("//evil.example/x", "/failed"),
    ("http://evil.example/", "/failed"),
    ("/\\evil.example", "/failed"),
])
def test_the_redirect_never_leaves_the_dashboard(web: WsgiClient, back: str,
                                                 location: str) -> None:
    token = web.token()
    _, headers, _ = web.post("/action/failed/clear", {"csrf": token, "back": back})
    assert headers["Location"] == location


def test_a_too_large_form_is_refused(web: WsgiClient) -> None:
    token = web.token()
    status, _, _ = web.post("/action/failed/clear", {"csrf": token, "pad": "x" * 70_000})
    assert status == "413 Content Too Large"


# -- actions: what they do ----------------------------------------------------------------------


def test_retry_requeues_the_entry_the_page_showed(r: redis.Redis, web: WsgiClient) -> None:
    ruby = seed_ruby_golden(r)
    body = web.get("/failed")[2]
    status, _, _ = web.post("/action/failed/retry", web.form_fields(body, "retry-0"))
    assert status == "303 See Other"
    assert r.lrange(NS + "queue:high", 0, -1) == [b'{"class":"RubyBoom","args":[{"k":"v"}]}']
    entry = json.loads(r.lindex(NS + "failed", 0))
    assert list(entry)[-1] == "retried_at" and re.match(r"\d{4}/\d\d/\d\d ", entry["retried_at"])
    assert r.lindex(NS + "failed", 1) == ruby[1]
    body = web.get("/failed")[2]
    assert flashes(body) == ["Failure #0 was requeued."] and "retried " in body


def test_remove_deletes_only_the_entry_the_page_showed(r: redis.Redis, web: WsgiClient) -> None:
    entries = seed_failures(r, 3)
    body = web.get("/failed")[2]
    web.post("/action/failed/remove", web.form_fields(body, "remove-1"))
    assert r.lrange(NS + "failed", 0, -1) == [entries[0], entries[2]]
    assert flashes(web.get("/failed")[2]) == ["Failure #1 was removed."]


@pytest.mark.parametrize("button", ["retry-0", "remove-0"])
def test_an_entry_changed_since_the_page_loaded_is_left_alone(r: redis.Redis, web: WsgiClient,
                                                              button: str) -> None:
    entries = seed_failures(r, 2)
    fields = web.form_fields(web.get("/failed")[2], button)
    r.lpop(NS + "failed")  # resque-web removed entry 0 meanwhile: #0 is now another failure
    web.post((button.startswith("retry") and "/action/failed/retry") or "/action/failed/remove",
             fields)
    assert r.lrange(NS + "failed", 0, -1) == [entries[1]]
    assert r.llen(NS + "queue:q") == 0
    [message] = flashes(web.get("/failed")[2])
    assert "changed since the page was loaded" in message


@pytest.mark.parametrize("index, text", [
    ("abc", "'abc' is not a failure index."),
    ("-1", "-1 is not a failure index."),
    ("99", "There is no failure #99 any more"),
])
@pytest.mark.parametrize("action", ["/action/failed/retry", "/action/failed/remove"])
def test_a_bad_index_is_a_flash_message(r: redis.Redis, web: WsgiClient, action: str,
                                        index: str, text: str) -> None:
    seed_failures(r, 1)
    status, _, _ = web.post(action, {"csrf": web.token(), "index": index})
    assert status == "303 See Other"
    [message] = flashes(web.get("/failed")[2])
    assert message.startswith(text)
    assert r.llen(NS + "failed") == 1


def test_an_unrequeueable_entry_is_a_flash_message(r: redis.Redis, web: WsgiClient) -> None:
    r.rpush(NS + "failed", '{"failed_at":"x","payload":{"args":[]},"queue":"q"}')
    web.post("/action/failed/retry", {"csrf": web.token(), "index": "0"})
    [message] = flashes(web.get("/failed")[2])
    assert "was not retried: the failure's payload has no class" in message


def test_retry_all_and_clear(r: redis.Redis, web: WsgiClient) -> None:
    seed_failures(r, 3)
    token = web.token()
    web.post("/action/failed/retry-all", {"csrf": token})
    assert r.llen(NS + "queue:q") == 3
    web.post("/action/failed/clear-retried", {"csrf": token})
    assert r.llen(NS + "failed") == 0
    assert flashes(web.get("/failed")[2]) == ["3 failures were requeued.",
                                              "3 retried failures were cleared."]


def test_pause_and_resume_a_queue(client: Client, web: WsgiClient) -> None:
    client.enqueue_to("mail", "Mailer", 1)
    token = web.token()
    web.post("/action/queues/pause", {"csrf": token, "queue": "mail", "back": "/queues"})
    assert client.paused_queues() == ["mail"]
    assert '<span class="tag warn">paused</span>' in web.get("/queues")[2]
    web.post("/action/queues/unpause", {"csrf": token, "queue": "mail"})
    assert client.paused_queues() == []
    web.post("/action/pause-all", {"csrf": token})
    assert client.all_paused()
    web.post("/action/unpause-all", {"csrf": token})
    assert not client.all_paused()


def test_pause_buttons_say_when_nothing_changed(client: Client, web: WsgiClient) -> None:
    token = web.token()
    for action, queue in [("queues/unpause", "mail"), ("queues/pause", "mail"),
                          ("queues/pause", "mail"), ("unpause-all", ""), ("pause-all", ""),
                          ("pause-all", ""), ("queues/unpause", "mail")]:
        web.post("/action/" + action, {"csrf": token, "queue": queue})
    assert flashes(web.get("/queues")[2]) == [
        "Queue mail was not paused; nothing changed.",
        "Queue mail is paused (pyresqueworker workers stop taking its jobs).",
        "Queue mail was already paused; nothing changed.",
        "Workers were not paused (pause-all-workers was not set); nothing changed.",
        "All workers are paused (Ruby and Python).",
        "All workers were already paused; nothing changed.",
        "Queue mail is resumed.",
    ]
    assert client.paused_queues() == [] and client.all_paused()


def test_schedule_buttons(client: Client, web: WsgiClient) -> None:
    client.schedules.add("nightly", "0 3 * * *", "Report", queue="reports")
    token = web.token()
    web.post("/action/schedules/disable", {"csrf": token, "name": "nightly"})
    schedule = client.schedules.get("nightly")
    assert schedule is not None and not schedule.enabled
    web.post("/action/schedules/enable", {"csrf": token, "name": "nightly"})
    schedule = client.schedules.get("nightly")
    assert schedule is not None and schedule.enabled
    web.post("/action/schedules/delete", {"csrf": token, "name": "nightly"})
    assert client.schedules.get("nightly") is None
    web.post("/action/schedules/enable", {"csrf": token, "name": "nightly"})
    assert flashes(web.get("/schedules")[2]) == [
        "Schedule nightly is disabled.", "Schedule nightly is enabled.",
        "Schedule nightly was deleted.", "There is no schedule named nightly."]


# -- basic auth and Host ------------------------------------------------------------------------


def test_basic_auth_is_needed_for_every_request(client: Client) -> None:
    web = WsgiClient(make_app(client, username="ops", password="s3cret"))
    for path in ["/", "/static/dashboard.css", "/action/failed/clear"]:
        status, headers, _ = web.get(path)
        assert status == "401 Unauthorized" and "Basic realm" in headers["WWW-Authenticate"]
    wrong = {"Authorization": "Basic b3BzOndyb25n"}  # ops:wrong
    assert web.get("/", headers=wrong)[0] == "401 Unauthorized"
    assert web.get("/", headers={"Authorization": "Bearer x"})[0] == "401 Unauthorized"
    right = {"Authorization": "Basic b3BzOnMzY3JldA=="}  # ops:s3cret
    assert web.get("/", headers=right)[0] == "200 OK"


def test_a_username_needs_a_password(client: Client) -> None:
    with pytest.raises(ValueError):
        make_app(client, username="ops")
    with pytest.raises(ValueError):
        make_app(client, username="", password="x")


@pytest.mark.parametrize("host, status", [
    ("127.0.0.1:5040", "200 OK"), ("localhost:5040", "200 OK"), ("[::1]:5040", "200 OK"),
    ("evil.example:5040", "400 Bad Request"), ("127.0.0.1.evil.example", "400 Bad Request"),
])
def test_a_loopback_dashboard_answers_only_loopback_names(client: Client, host: str,
                                                          status: str) -> None:
    web = WsgiClient(Dashboard(client, allowed_hosts=LOOPBACK_NAMES), host=host)
    assert web.get("/")[0] == status


# -- errors -------------------------------------------------------------------------------------


def test_redis_down_is_a_503_with_one_line() -> None:
    down = Client(url=f"redis://127.0.0.1:{free_port()}/0")
    for path in ["/", "/failed", "/workers"]:
        status, _, body = WsgiClient(make_app(down)).get(path)
        assert status == "503 Service Unavailable"
        [line] = re.findall(r'<p class="one-line">(.*?)</p>', body)
        assert line.startswith("Redis is unreachable (")
        assert "Traceback" not in body


def test_a_key_of_the_wrong_type_is_an_error_line_not_a_traceback(r: redis.Redis,
                                                                  client: Client,
                                                                  web: WsgiClient) -> None:
    r.set(NS + "failed", "not a list")
    status, _, body = web.get("/failed")
    assert status == "500 Internal Server Error" and "WRONGTYPE" in body
    assert "Traceback" not in body
    r.delete(NS + "failed")
    client.enqueue_to("ok", "Job")
    r.sadd(NS + "queues", "broken")
    r.set(NS + "queue:broken", "x")
    status, _, body = web.get("/queues")
    assert status == "200 OK" and "not a list" in body


def test_unknown_pages_and_static_files_are_404(web: WsgiClient) -> None:
    for path in ["/nope", "/static/../app.py", "/static/", "/delayed/abc", "/queues/"]:
        assert web.get(path)[0] == "404 Not Found", path
    status, headers, _ = web.get("/static/dashboard.js")
    assert status == "200 OK" and headers["Content-Type"].startswith("text/javascript")


# -- the server ---------------------------------------------------------------------------------


@pytest.fixture
def live(client: Client) -> Iterator[str]:
    with running_dashboard(client) as url:
        yield url


def test_the_server_answers_over_http(live: str) -> None:
    with urllib.request.urlopen(live + "/failed") as response:
        assert response.status == 200
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "pyresque_web=" in response.headers["Set-Cookie"]
        assert b"No failed jobs." in response.read()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(live + "/action/failed/clear")
    assert caught.value.code == 405


def test_serve_reports_a_port_in_use(client: Client) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            serve(client, port=taken.getsockname()[1])
