"""What the dashboard shows a newcomer: ActiveJob jobs under their own class with decoded
arguments, failures without class or queue, retry attempts, Retry only where it can work,
paused workers, and queues pushed by hand (at the WSGI level; no browser)."""

from __future__ import annotations

import html
import re

import pytest
import redis
from conftest import GOLDEN
from web_helpers import WsgiClient

from pyresqueworker import Client
from pyresqueworker.protocol import wire
from pyresqueworker.web import make_app

NS = "resque:"
ACTIVE_JOB = (GOLDEN / "activejob-6.1-payload.json").read_text().strip()  # written by Rails
ACTIVE_JOB_ID = "a256f527-6bc7-4824-b0c9-dceb9c4dc3f7"
# The golden job's arguments, decoded: a symbol, a Time, and Ruby keyword arguments.
DECODED = ('"world", 42, {"plain":1,"sym":"x"}, greeting: "hi", '
           'at: "2024-01-15 09:50:00+00:00"')


@pytest.fixture
def client(r: redis.Redis) -> Client:
    return Client(r)


@pytest.fixture
def web(client: Client) -> WsgiClient:
    return WsgiClient(make_app(client))


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
