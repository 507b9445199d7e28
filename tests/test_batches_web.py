"""The dashboard's batch pages at the WSGI level: the list, one batch, escaping, errors."""

from __future__ import annotations

import html
import json
import re
import time

import pytest
import redis
from batch_helpers import NS, finish, hold, make_batch
from web_helpers import XSS_IMG, XSS_SCRIPT, WsgiClient

from pyresqueworker import Client
from pyresqueworker.protocol.workflow import WorkflowKeys
from pyresqueworker.web import batches as batch_pages


def row_of(body: str, batch_id: str) -> str:
    match = re.search(rf'<tr data-batch="{batch_id}">(.*?)</tr>', body, re.S)
    assert match, body
    return match.group(1)


def member_rows(body: str) -> dict[str, list[str]]:
    """Each member row's cells as text, by member."""
    rows = {}
    for member, cells in re.findall(r'<tr data-member="([^"]+)"[^>]*>(.*?)</tr>', body, re.S):
        texts = [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
                 for cell in re.findall(r"<td>(.*?)</td>", cells, re.S)]
        rows[html.unescape(member)] = texts
    return rows


def waiting_for(body: str) -> list[str]:
    match = re.search(r'<ul id="waiting-for"[^>]*>(.*?)</ul>', body, re.S)
    if match is None:
        return []
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", item)).split())
            for item in re.findall(r"<li[^>]*>(.*?)</li>", match.group(1), re.S)]


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def callbacks_of(body: str) -> dict[str, str]:
    return {name: text_of(cells)
            for name, cells in re.findall(r'<tr data-callback="(\w+)">(.*?)</tr>', body, re.S)}


def card(body: str, name: str) -> int:
    match = re.search(rf'id="{name}">(\d+)<', body)
    assert match, name
    return int(match.group(1))


def test_the_list_shows_each_batch_with_its_counts_and_progress(r: redis.Redis, client: Client,
                                                                web: WsgiClient) -> None:
    old, old_jobs = make_batch(client, [("Square", [1]), ("Square", [2])],
                               description="first")
    time.sleep(0.01)  # batches are listed by creation time, kept in milliseconds
    new, new_jobs = make_batch(client, [("Square", [n]) for n in range(4)],
                               description="nightly")
    for job_id in new_jobs[:2]:
        finish(r, new, job_id)
    finish(r, new, new_jobs[2], "failed")
    for job_id in old_jobs:
        finish(r, old, job_id)
    status, _, body = web.get("/batches")
    assert status == "200 OK"
    assert "<h1>Batches" in body
    assert '<a href="/batches" class="current" aria-current="page">Batches</a>' in body
    assert body.index(f'data-batch="{new}"') < body.index(f'data-batch="{old}"')  # newest first
    row = row_of(body, new)
    assert f'href="/batches/{new}"' in row and "nightly" in row
    assert '<progress max="4" value="3"' in row and '<span class="percent">75%</span>' in row
    numbers = re.findall(r'<td class="num">(?:<span class="failed">)?(\d+)', row)
    assert numbers == ["4", "1", "2", "1"]  # total, pending, succeeded, failed
    assert "running" in row and "complete" not in row
    row = row_of(body, old)
    assert "100%" in row and '<span class="tag ok">complete</span>' in row
    assert re.findall(r'<td class="num">(\d+)', row) == ["2", "0", "2", "0"]


def test_no_batches(web: WsgiClient) -> None:
    status, _, body = web.get("/batches")
    assert status == "200 OK" and '<p class="empty">No batches.</p>' in body


def test_a_running_batch_shows_its_members_and_what_it_waits_for(
        r: redis.Redis, client: Client, web: WsgiClient) -> None:
    batch_id, (done, failed, held, queued) = make_batch(
        client, [("Square", [1]), ("Cube", [2]), ("Square", [3]), ("Report", [4])],
        on_success=("Notify", [42, "all"]), on_complete=("Done", []), description="nightly")
    finish(r, batch_id, done)
    finish(r, batch_id, failed, "failed")
    hold(r, held)
    status, _, body = web.get(f"/batches/{batch_id}")
    assert status == "200 OK"
    assert f'<h1>Batch <span class="mono">{batch_id}</span>' in body
    assert [card(body, name) for name in ("total", "pending", "succeeded", "failed")] == [
        4, 2, 1, 1]
    assert '<progress max="4" value="2"' in body and "50%" in body
    assert waiting_for(body) == sorted([f"{held} Square running", f"{queued} Report queued"])
    rows = member_rows(body)
    assert rows[done] == [done, "Square", "q", "succeeded", "succeeded"]
    assert rows[failed] == [failed, "Cube", "q", "failed", "failed"]
    assert rows[held] == [held, "Square", "q", "pending", "running"]
    assert rows[queued] == [queued, "Report", "q", "pending", "queued"]
    assert list(rows)[:2] == sorted([held, queued])  # unfinished first
    assert callbacks_of(body) == {"on_success": 'on_success Notify [42,"all"] waits for the batch',
                                  "on_complete": "on_complete Done [] waits for the batch"}
    assert '<td id="parent">none</td>' in body
    assert '<a href="/queues/low">low</a>' in body


def test_a_complete_batch_says_which_callbacks_were_enqueued(r: redis.Redis, client: Client,
                                                             web: WsgiClient) -> None:
    batch_id, (ok, bad) = make_batch(client, [("Square", [1]), ("Square", [2])])
    finish(r, batch_id, ok)
    finish(r, batch_id, bad, "failed")
    body = web.get(f"/batches/{batch_id}")[2]
    assert 'id="waiting-for"' not in body and "Waiting for" not in body
    assert '<span class="tag bad">complete, 1 failed</span>' in body
    assert callbacks_of(body) == {
        "on_success": "on_success Notify [42] not enqueued: a member failed",
        "on_complete": "on_complete Done [] enqueued"}
    assert [card(body, name) for name in ("total", "pending", "succeeded", "failed")] == [
        2, 0, 1, 1]


def test_child_batches_link_both_ways(r: redis.Redis, client: Client, web: WsgiClient) -> None:
    parent, _ = make_batch(client, [("Square", [1])], description="parent")
    child, (child_job,) = make_batch(client, [("Cube", [2])], on_success=None,
                                     on_complete=None, parent=parent)
    body = web.get(f"/batches/{parent}")[2]
    assert f'child batch <a class="mono" href="/batches/{child}">{child}</a>' in body
    assert member_rows(body)[f"batch:{child}"] == [f"child batch {child}", "batch", "",
                                                   "pending", ""]
    assert f"child batch {child}" in waiting_for(body)
    body = web.get(f"/batches/{child}")[2]
    assert f'<td id="parent"><a class="mono" href="/batches/{parent}">{parent}</a></td>' in body
    assert callbacks_of(body) == {"on_success": "on_success none",
                                  "on_complete": "on_complete none"}
    assert "in batch" in row_of(web.get("/batches")[2], child)
    finish(r, child, child_job)
    assert member_rows(web.get(f"/batches/{parent}")[2])[f"batch:{child}"][3] == "succeeded"


def test_a_member_whose_record_expired_is_still_listed(r: redis.Redis, client: Client,
                                                       web: WsgiClient) -> None:
    batch_id, (job_id,) = make_batch(client, [("Square", [1])])
    r.delete(WorkflowKeys(NS).record(job_id))
    body = web.get(f"/batches/{batch_id}")[2]
    assert member_rows(body)[job_id] == [job_id, "-", "", "pending", ""]
    assert waiting_for(body) == [f"{job_id} (record expired)"]


def test_members_are_paged(client: Client, web: WsgiClient,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_pages, "MEMBERS_PER_PAGE", 2)
    monkeypatch.setattr(batch_pages, "WAITING_SHOWN", 2)
    batch_id, jobs = make_batch(client, [("Square", [n]) for n in range(5)])
    body = web.get(f"/batches/{batch_id}")[2]
    assert list(member_rows(body)) == sorted(jobs)[:2]
    assert f'href="/batches/{batch_id}?start=2">next' in body
    assert len(waiting_for(body)) == 3 and waiting_for(body)[-1] == "and 3 more"
    body = web.get(f"/batches/{batch_id}?start=4")[2]
    assert list(member_rows(body)) == sorted(jobs)[4:]
    assert "5\u20135 of 5" in body


def test_text_from_redis_is_escaped(r: redis.Redis, client: Client, web: WsgiClient) -> None:
    batch_id, (job_id,) = make_batch(
        client, [("Square", [1])], description=f"nightly {XSS_SCRIPT} \x1b[31m & more",
        on_success=("Notify", [XSS_IMG]))
    r.hset(WorkflowKeys(NS).record(job_id), "class", XSS_SCRIPT)  # any client may write it
    for path in ("/batches", f"/batches/{batch_id}"):
        body = web.get(path)[2]
        assert XSS_SCRIPT not in body and XSS_IMG not in body and "\x1b" not in body
        assert html.escape("nightly <script>alert(1)</script> \\x1b[31m & more",
                           quote=False) in body
    assert callbacks_of(body)["on_success"].startswith(  # the callback's args, as JSON
        "on_success Notify " + json.dumps([XSS_IMG], separators=(",", ":")))
    assert member_rows(body)[job_id][1] == XSS_SCRIPT  # shown as text


def test_unknown_batch_is_404_and_the_pages_are_get_only(client: Client,
                                                         web: WsgiClient) -> None:
    status, _, body = web.get("/batches/no-such-batch")
    assert status == "404 Not Found" and "No such batch" in body
    batch_id, _ = make_batch(client, [("Square", [1])])
    for path in ("/batches", f"/batches/{batch_id}"):
        status, headers, _ = web.post(path, {})
        assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD"
