"""What the dashboard shows a newcomer: ActiveJob jobs under their own class with decoded
arguments, failures without class or queue, retry attempts, Retry only where it can work,
paused workers, and queues pushed by hand (at the WSGI level; no browser)."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import redis
from conftest import GOLDEN
from web_helpers import WsgiClient

from pyresqueworker import Client
from pyresqueworker.cli.admin.render import clean
from pyresqueworker.protocol import wire

NS = "resque:"
ACTIVE_JOB = (GOLDEN / "activejob-6.1-payload.json").read_text().strip()  # written by Rails
ACTIVE_JOB_ID = "a256f527-6bc7-4824-b0c9-dceb9c4dc3f7"
# The golden job's arguments, decoded: a symbol, a Time, and Ruby keyword arguments.
DECODED = ('"world", 42, {"plain":1,"sym":"x"}, greeting: "hi", '
           'at: "2024-01-15 09:50:00+00:00"')


def text_of(body: str) -> str:
    """A page as a reader sees it: markup dropped, entities decoded, white space folded."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def page_text(web: WsgiClient, path: str) -> str:
    status, _, body = web.get(path)
    assert status == "200 OK", (path, body)
    return text_of(body)


def failure_entry(payload: object, **fields: object) -> str:
    entry = {"failed_at": "2024/01/15 09:50:00 UTC", "payload": payload,
             "exception": "RuntimeError", "error": "boom", "backtrace": [],
             "worker": "h:1:q", "queue": "q", **fields}
    return wire.dumps({key: value for key, value in entry.items() if value is not None})


def assert_active_job_shown(text: str) -> None:
    assert "HelloJob (via ActiveJob)" in text
    assert DECODED in text and ACTIVE_JOB_ID in text
    # Not the wrapper's JSON: no serializer markers, no job_data keys.
    assert "_aj_" not in text and "job_class" not in text and "executions" not in text


# -- ActiveJob ------------------------------------------------------------------------------------


def test_active_job_rows_show_the_job_class_and_decoded_arguments(
        r: redis.Redis, web: WsgiClient) -> None:
    r.rpush(NS + "queue:default", ACTIVE_JOB)
    assert_active_job_shown(page_text(web, "/queues/default"))
    r.rpush(NS + "failed", failure_entry(wire.loads(ACTIVE_JOB), queue="default"))
    assert_active_job_shown(page_text(web, "/failed"))
    worker = "rails:7:default"
    r.sadd(NS + "workers", worker)
    r.set(NS + "worker:" + worker, wire.worker_value("default", "2024-01-15T09:50:00Z",
                                                     ACTIVE_JOB))
    assert_active_job_shown(page_text(web, "/workers"))
    assert_active_job_shown(page_text(web, "/"))  # "working now"


def test_history_shows_active_job_runs_like_the_other_pages(r: redis.Redis,
                                                            web: WsgiClient) -> None:
    keys = wire.Keys()
    for finished_at, class_name, payload in [
            (1_700_000_000.0, "HelloJob", wire.loads(ACTIVE_JOB)),
            (1_700_000_001.0, "Archive", {"class": "Archive", "args": [35, "tar"]})]:
        record = wire.dumps({
            "finished_at": finished_at, "outcome": "success", "duration_ms": 3.5,
            "queue": "default", "class": class_name, "worker": "h:1:default",
            "job_id": ACTIVE_JOB_ID if class_name == "HelloJob" else None, "error": None,
            "payload_bytes": 10, "payload": payload})
        r.zadd(keys.history, {record: finished_at})
    body = web.get("/history")[2]
    assert_active_job_shown(text_of(body))
    assert 'Archive</span> <code class="args">[35,&#34;tar&#34;]</code>' in body
    # Times stay on one line (the stylesheet keeps td.time from wrapping).
    assert len(re.findall(r'<td class="time">[^<]+</td>', body)) == 2
    css = web.get("/static/dashboard.css")[2]
    assert re.search(r"td\.time\s*\{[^}]*white-space:\s*nowrap", css)


def test_undecodable_active_job_arguments_are_shown_as_stored(r: redis.Redis,
                                                              web: WsgiClient) -> None:
    odd = {"class": "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper",
           "args": [{"job_class": "HelloJob", "arguments": [
               {"_aj_serialized": "ActiveJob::Serializers::TimeSerializer", "value": "never"}]}]}
    r.rpush(NS + "queue:default", wire.dumps(odd))
    text = page_text(web, "/queues/default")
    assert "HelloJob (via ActiveJob)" in text and '"value":"never"' in text


# -- failures ---------------------------------------------------------------------------------


def test_failures_without_class_or_queue_and_retry_only_where_it_works(
        r: redis.Redis, web: WsgiClient) -> None:
    r.rpush(NS + "failed",
            failure_entry({"class": "Good", "args": [1]}),              # 0: retryable
            failure_entry({"args": [1]}, queue=None),                   # 1: no class, no queue
            failure_entry("just text"),                                 # 2: payload not an object
            failure_entry({"class": 7, "args": []}),                    # 3: class not a string
            failure_entry({"class": "NoQueue", "args": []}, queue=None))  # 4: nowhere to go
    body = web.get("/failed")[2]
    assert 'id="retry-0"' in body
    assert [n for n in range(5) if f'id="retry-{n}"' in body] == [0]
    assert all(f'id="remove-{n}"' in body for n in range(5))  # Remove always works
    text = text_of(body)
    assert "null" not in text and "None" not in text
    assert "RuntimeError (no class) [1]" in text and "Queue (no queue)" in text
    assert "RuntimeError in Good [1]" in text
    assert text.count("cannot be retried") == 4


def test_retry_attempts_are_shown_on_the_failed_page(r: redis.Redis, web: WsgiClient) -> None:
    r.rpush(NS + "failed", failure_entry({"class": "Flaky", "args": []}, attempts=4),
            failure_entry({"class": "Ruby", "args": []}))
    body = web.get("/failed")[2]
    assert re.findall(r'<dt>Attempts</dt><dd class="attempts">(\d+)</dd>', body) == ["4"]


# -- workers and pauses -----------------------------------------------------------------------


def test_paused_workers_are_shown_as_paused(r: redis.Redis, client: Client,
                                            web: WsgiClient) -> None:
    for worker in ("box:1:low", "box:2:low"):
        r.sadd(NS + "workers", worker)
    r.sadd(NS + "pyresque:paused-workers", "box:1:low")  # a worker paused with USR2
    body = web.get("/workers")[2]
    states = re.findall(r'<tr class="(\w+)">', body)
    assert states == ["paused", "idle"]
    assert ">paused</span>" in body
    overview = text_of(web.get("/")[2])
    assert "1 paused" in overview and "pause-all-workers" not in overview
    client.pause_all()
    assert re.findall(r'<tr class="(\w+)">', web.get("/workers")[2]) == ["paused", "paused"]
    overview = text_of(web.get("/")[2])
    assert "2 paused" in overview
    assert "All workers are paused: pause-all-workers is on" in overview


# -- queues pushed by hand --------------------------------------------------------------------


def test_a_queue_pushed_by_hand_shows_with_its_size(r: redis.Redis, client: Client,
                                                    web: WsgiClient) -> None:
    for n in range(3):
        r.rpush(NS + "queue:low", wire.dumps({"class": "Archive", "args": [n]}))
    client.enqueue_to("high", "Mailer", 1)  # through the queues set
    body = web.get("/queues")[2]
    sizes = dict(re.findall(r'<tr data-queue="(\w+)">.*?<td class="num">(\d+)</td>', body,
                            re.S))
    assert sizes == {"high": "1", "low": "3"}
    row = re.search(r'<tr data-queue="low">.*?</tr>', body, re.S)
    assert row is not None and "not in queues set" in row.group()
    row = re.search(r'<tr data-queue="high">.*?</tr>', body, re.S)
    assert row is not None and "not in queues set" not in row.group()
    overview = web.get("/")[2]
    assert re.search(r'Pending</span><span class="value">4<', overview)
    assert re.search(r'Queues</span><span class="value">2<', overview)
    assert re.search(r'<a href="/queues/low">low</a>.*?<td class="num">3</td>', overview, re.S)
    text = page_text(web, "/queues/low")
    assert "3 jobs." in text and "not in the queues set" in text and "Archive" in text
    assert "not in the queues set" not in page_text(web, "/queues/high")


# -- control characters -----------------------------------------------------------------------

RED = "\x1b[31mred\x1b[0m"
# Other C0 and C1 controls, DEL, a bidi override and a line separator.
CONTROLS = "\x00\x07\x08\x0b\x0c\r\x7f\x85\x9b\u202e\u2028"
# What may not reach a page: every control but the newline (template layout, <pre> lines).
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
TIME = 2_000_000_000


def seed_controls(r: redis.Redis, client: Client) -> tuple[str, str]:
    """Control characters in every kind of text the pages show; returns (queue, worker id)."""
    queue, worker = "mail" + RED + CONTROLS, "h:1:q" + RED + CONTROLS
    payload = {"class": "Mailer" + RED, "args": [RED + CONTROLS, {"k": CONTROLS}]}
    r.rpush(NS + "failed", failure_entry(
        payload, exception="Boom" + RED + CONTROLS, error="first " + RED + "\nsecond" + CONTROLS,
        backtrace=["app.rb:1" + RED, "app.rb:2" + CONTROLS], worker=worker, queue=queue))
    r.rpush(NS + "queue:" + queue, wire.dumps(payload))
    r.sadd(NS + "queues", queue)
    r.sadd(NS + "workers", worker)
    r.set(NS + "worker:" + worker, wire.worker_value(queue, "2024-01-15T09:50:00Z",
                                                     wire.dumps(payload)))
    r.set(NS + "stat:processed:" + worker, 1)
    r.zadd(NS + "delayed_queue_schedule", {str(TIME): TIME})
    r.rpush(NS + f"delayed:{TIME}", wire.dumps({**payload, "queue": queue}))
    # (Schedule names, classes and queues must be printable: the store checks them.)
    client.schedules.add("nightly", "0 3 * * *", "Report", [RED + CONTROLS], queue="reports",
                         description=RED + CONTROLS)
    record = wire.dumps({"finished_at": 1_700_000_000.0, "outcome": "failure",
                         "duration_ms": 3.5, "queue": queue, "class": "Mailer" + RED,
                         "worker": worker, "job_id": "id" + RED, "error": "Boom: " + RED
                         + CONTROLS, "payload_bytes": 10, "payload": payload})
    r.zadd(wire.Keys(NS).history, {record: 1_700_000_000.0})
    return queue, worker


def as_path_info(path: str) -> str:
    """``path`` as a WSGI server hands it over: unquoted, UTF-8 bytes as latin-1 (PEP 3333)."""
    return path.encode("utf-8").decode("latin-1")


def hidden_fields(body: str, action: str) -> dict[str, str]:
    """The hidden fields of the page's (first) form posting to ``action``."""
    form = re.search(f'<form method="post" action="{action}".*?</form>', body, re.S)
    assert form is not None, action
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group())
    return {name: html.unescape(value) for name, value in fields}


def test_control_characters_never_reach_a_page_and_read_as_in_the_cli(
        r: redis.Redis, client: Client, web: WsgiClient) -> None:
    queue, worker = seed_controls(r, client)
    queue_page = as_path_info("/queues/" + queue)
    # The Pause button carries the queue's exact name, controls and all, through the page.
    web.post("/action/queues/pause", hidden_fields(web.get(queue_page)[2], "/action/queues/pause"))
    assert client.paused_queues() == [queue]
    bodies = {}
    for path in ["/", "/queues", queue_page, "/workers", "/failed",
                 "/delayed", f"/delayed/{TIME}", "/schedules", "/history",
                 "/history?class=" + quote("Mailer" + RED), "/history?id=" + quote("id" + RED),
                 "/stats", "/charts"]:
        status, _, body = web.get(path)
        assert status == "200 OK", path
        found = RAW_CONTROL.search(body)
        assert found is None, (path, found, body[max(0, found.start() - 80):found.end() + 80])
        bodies[path] = html.unescape(body)
    assert "Queue " + clean(queue) + " is paused" in bodies["/"]  # the flash message
    # Shown as the CLI shows them (multi-line text keeps its lines), on every page.
    failed = bodies["/failed"]
    for text in ("Boom" + RED + CONTROLS, "first " + RED + "\nsecond" + CONTROLS,
                 "app.rb:1" + RED + "\napp.rb:2" + CONTROLS, worker, queue):
        assert clean(text, multiline=True) in failed, text
    assert "\\x1b[31mred\\x1b[0m" in failed
    assert clean(wire.dumps([RED + CONTROLS])[1:-1]) in failed  # args: JSON, then escaped
    for path in ("/", "/queues", "/workers", queue_page, f"/delayed/{TIME}"):
        assert clean(queue) in bodies[path], path
    for path in ("/workers", "/stats", "/history"):
        assert clean(worker) in bodies[path], path
    assert clean("Boom: " + RED + CONTROLS) in bodies["/history"]
    assert clean(RED + CONTROLS) in bodies["/schedules"]  # the description
