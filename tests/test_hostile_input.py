"""Hostile queue items: whatever bytes land in a queue, the worker survives and accounts for them.

Items are pushed with a raw ``RPUSH`` (the way a buggy or hostile client would) to a queue that
ONE long-running worker subprocess drains. For every item: the worker stays alive, and the item
ends as exactly one success (``rel:ok``) or exactly one ``failed`` entry that Ruby Resque and
resque-web can read (keys in Resque's order, ``failed_at`` format, backtrace of strings...).

The payloads are data only: no class name is ever resolved to a Python object, and the package
never uses ``pickle``, ``marshal``, ``eval`` or ``exec``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from apps.reliability_jobs import OK, Fleet
from conftest import ROOT, RUBY_CLIENT, RedisServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from worker_helpers import FAILED_AT_RE, FAILURE_KEYS, wait_until

NS = "resque:"
QUEUE = "hostile"
DECODE = "Resque::Helpers::DecodeException"
# Ruby's JSON accepts a lone surrogate escape; the claim script's cjson refuses it: either way.
ANY_DECODE_OR_OK = "ok-or-" + DECODE


@dataclass
class Batch:
    """What became of one batch of pushed items."""

    pushed: list[bytes]
    oks: list[bytes]
    failures: list[bytes]
    outcome: dict[int, str] = field(default_factory=dict)  # pushed index -> "ok" / exception


class HostileQueue:
    """A Redis of its own and one worker on ``hostile``, shared by this module's tests."""

    def __init__(self, server: RedisServer, fleet: Fleet) -> None:
        self.server = server
        self.r = server.client()
        self.fleet = fleet
        self.worker = fleet.start()
        self.worker_ids = self.worker.wait_registered(1)

    def alive(self) -> bool:
        return bool(self.worker.proc.poll() is None)

    def run(self, items: Sequence[bytes], timeout: float = 30.0) -> Batch:
        """Push ``items``, wait until the worker has processed each once, match outcomes."""
        r = self.r
        failed_before, ok_before = r.llen(NS + "failed"), r.llen(OK)
        processed_before = int(r.get(NS + "stat:processed") or 0)
        r.sadd(NS + "queues", QUEUE)
        for item in items:  # one at a time: a 10 MB item must not share a request
            r.rpush(NS + "queue:" + QUEUE, item)

        def drained() -> bool:
            if not self.alive():
                raise AssertionError(f"the worker died:\n{self.worker.log()[-6000:]}")
            processed = int(r.get(NS + "stat:processed") or 0) - processed_before
            return (processed >= len(items) and not r.llen(NS + "queue:" + QUEUE)
                    and not r.exists(*(NS + "worker:" + w for w in self.worker_ids)))

        wait_until(drained, f"the worker to process {len(items)} item(s)", timeout, 0.01)
        assert int(r.get(NS + "stat:processed") or 0) - processed_before == len(items)
        batch = Batch(list(items), r.lrange(OK, ok_before, -1),
                      r.lrange(NS + "failed", failed_before, -1))
        match_outcomes(batch)
        assert self.alive()
        return batch


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileQueue]:
    server = RedisServer()
    fleet = Fleet(server.url, "--queues", QUEUE, "--concurrency", "1", "--interval", "0.1")
    try:
        yield HostileQueue(server, fleet)
    finally:
        fleet.close()
        server.stop()


# -- what a failure entry must be, and which item it belongs to ----------------------------------


def check_failure_entry(raw: bytes) -> dict[str, Any]:
    """Assert ``raw`` is a failure entry as Ruby's Failure::Redis and resque-web read it."""
    text = raw.decode("utf-8")  # Ruby's JSON refuses invalid UTF-8
    pairs = json.loads(text, object_pairs_hook=lambda kv: kv)
    assert isinstance(pairs, list), "not a JSON object"
    assert [key for key, _value in pairs] == FAILURE_KEYS
    entry = json.loads(text)  # the values again, with nested objects as dicts
    assert FAILED_AT_RE.match(entry["failed_at"]), entry["failed_at"]
    assert isinstance(entry["backtrace"], list)
    assert all(isinstance(line, str) for line in entry["backtrace"])
    for name in ("exception", "error", "worker", "queue"):
        assert isinstance(entry[name], str) and entry[name], (name, entry[name])
    assert entry["queue"] == QUEUE
    return dict(entry)


def _embeds(entry: bytes, item: bytes) -> bool:
    """True if ``entry``'s payload is ``item`` byte for byte (a JSON object item)."""
    start = entry.find(b',"payload":')
    return start >= 0 and entry[start + 11:].startswith(item + b',"exception":')


def _failure_is_for(entry: bytes, payload: Any, item: bytes) -> bool:
    if isinstance(payload, str):  # an item that is not a JSON object is kept as text
        return payload == item.decode("utf-8", "backslashreplace")
    return _embeds(entry, item)


def match_outcomes(batch: Batch) -> None:
    """Give every pushed item exactly one outcome: a success or one failure entry."""
    unmatched = dict(enumerate(batch.pushed))
    for ok in batch.oks:
        index = next((i for i, item in unmatched.items() if item == ok), None)
        assert index is not None, f"a success for an item never pushed: {ok[:200]!r}"
        batch.outcome[index] = "ok"
        del unmatched[index]
    for raw in batch.failures:
        entry = check_failure_entry(raw)
        index = next((i for i, item in unmatched.items()
                      if _failure_is_for(raw, entry["payload"], item)), None)
        assert index is not None, f"a failure for no pushed item (or a second one): {raw[:300]!r}"
        batch.outcome[index] = entry["exception"]
        del unmatched[index]
    assert not unmatched, f"items with no outcome: {[v[:100] for v in unmatched.values()]}"


# -- a corpus of known-bad items -------------------------------------------------------------------

DEEP = 100_000
CORPUS: list[tuple[str, bytes, str]] = [
    ("not JSON", b"not json", DECODE),
    ("bytes ff fe", b"\xff\xfe", DECODE),
    ("empty item", b"", DECODE),
    ("whitespace only", b" \t\r\n", DECODE),
    ("invalid JSON with high bytes", b'{"class":"RelEcho","args":["\xff\xfe"', DECODE),
    ("invalid UTF-8 in a string", b'{"class":"RelEcho","args":["\xc3\x28"]}', DECODE),
    ("UTF-8-encoded surrogate", b'{"class":"RelEcho","args":["\xed\xa0\x80"]}', DECODE),
    ("overlong UTF-8", b'{"class":"RelEcho","args":["\xc0\xaf"]}', DECODE),
    ("lone high surrogate escape", b'{"class":"RelEcho","args":["\\ud800"]}', ANY_DECODE_OR_OK),
    ("lone low surrogate escape", b'{"class":"RelEcho","args":["x\\udc00"]}', ANY_DECODE_OR_OK),
    ("NaN", b'{"class":"RelEcho","args":[NaN]}', DECODE),
    ("-Infinity", b'{"class":"RelEcho","args":[-Infinity]}', DECODE),
    ("hex number", b'{"class":"RelEcho","args":[0x10]}', DECODE),
    ("trailing garbage", b'{"class":"RelEcho","args":[]} x', DECODE),
    ("two objects", b'{"class":"RelEcho","args":[]}{"class":"RelEcho","args":[]}', DECODE),
    ("raw control character", b'{"class":"RelEcho","args":["a\x01b"]}', DECODE),
    ("100,000 nested arrays", b"[" * DEEP + b"]" * DEEP, DECODE),
    ("100,000 nested objects in args",
     b'{"class":"RelEcho","args":[' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"]}", DECODE),
    ("100,000 nested arrays in args",
     b'{"class":"RelEcho","args":' + b"[" * DEEP + b"]" * DEEP + b"}", DECODE),
    ("class is a number", b'{"class":1}', DECODE),
    ("class is null", b'{"class":null,"args":[]}', DECODE),
    ("class is empty", b'{"class":"","args":[]}', DECODE),
    ("class is an array", b'{"class":["RelEcho"],"args":[]}', DECODE),
    ("args is an object", b'{"class":"RelEcho","args":{}}', DECODE),
    ("args is a string", b'{"class":"RelEcho","args":"abc"}', DECODE),
    ("top-level array", b"[]", DECODE),
    ("top-level string", b'"str"', DECODE),
    ("top-level null", b"null", DECODE),
    ("top-level number", b"42", DECODE),
    ("empty object", b"{}", DECODE),
    ("unknown class", b'{"class":"NoSuchJob","args":[1]}', "NameError"),
    ("decoder raises", b'{"class":"RelBadDecoder","args":[]}', DECODE),
    ("too few arguments", b'{"class":"RelTakesTwo","args":[1]}', "TypeError"),
    ("too many arguments", b'{"class":"RelTakesTwo","args":[1,2,3]}', "TypeError"),
    ("handler raises", b'{"class":"RelBoom","args":[]}', "reliability_jobs.RelError"),
    # Items Ruby Resque would run: the worker must run them too.
    ("args null means none", b'{"class":"RelEcho","args":null}', "ok"),
    ("no args key", b'{"class":"RelEcho"}', "ok"),
    ("duplicate class key: the last wins",
     b'{"class":"NoSuchJob","class":"RelEcho","args":[]}', "ok"),
    ("exponent beyond a double", b'{"class":"RelEcho","args":[1e400]}', "ok"),
    ("big integer", b'{"class":"RelEcho","args":[123456789012345678901234567890]}', "ok"),
    ("escaped NUL in an argument", b'{"class":"RelEcho","args":["\\u0000"]}', "ok"),
    ("leading whitespace", b' \n{"class":"RelEcho","args":[]}', "ok"),
    ("500 nested arrays in args", b'{"class":"RelEcho","args":' + b"[" * 500 + b"]" * 500 + b"}",
     "ok"),
]


def test_corpus_each_item_ends_once_and_the_worker_survives(hostile: HostileQueue) -> None:
    batch = hostile.run([item for _name, item, _expected in CORPUS])
    wrong = {}
    for index, (name, _item, expected) in enumerate(CORPUS):
        got = batch.outcome[index]
        if got != expected and not (expected == ANY_DECODE_OR_OK and got in ("ok", DECODE)):
            wrong[name] = (expected, got)
    assert wrong == {}


def test_big_payloads(hostile: HostileQueue) -> None:
    big = "é" * (5 * 1024 * 1024)  # 10 MB of UTF-8 as one JSON string argument
    good = json.dumps({"class": "RelEcho", "args": [big]}, ensure_ascii=False).encode()
    unknown = json.dumps({"class": "NoSuchJob", "args": [big]}, ensure_ascii=False).encode()
    garbage = os.urandom(1024 * 1024)  # not UTF-8: stored escaped, kept as text in the failure
    batch = hostile.run([good, unknown, garbage], timeout=60.0)
    assert batch.outcome == {0: "ok", 1: "NameError", 2: DECODE}
    assert batch.oks == [good]  # the handler saw the item byte for byte


# -- random items --------------------------------------------------------------------------------

_CLASSES = ["RelEcho", "RelBoom", "RelTakesTwo", "RelBadDecoder", "NoSuchJob", "os.system",
            "", "::RelEcho", "rel-echo", "__import__"]
_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1,
                      max_size=2)
_leaves = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8) | _surrogates)


def _containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)


_values = st.recursive(_leaves, _containers, max_leaves=8)
_class_names = (st.sampled_from(_CLASSES) | st.text(max_size=10) | st.none() | st.integers()
                | st.lists(st.integers(), max_size=2))
_jobs = st.fixed_dictionaries(
    {"class": _class_names},
    optional={"args": st.lists(_values, max_size=3) | _values, "queue": _values})


def _encode(value: Any, how: str) -> bytes:
    """JSON text with ASCII escapes, or raw UTF-8 (where a surrogate becomes invalid bytes)."""
    text = json.dumps(value, ensure_ascii=how == "ascii", allow_nan=False)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def hostile_items(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "job", "job", "mangled job"]))
    if kind == "bytes":
        return draw(st.binary(max_size=48))
    value = draw(_values if kind == "json" else _jobs)
    data = _encode(value, draw(st.sampled_from(["ascii", "raw"])))
    if kind == "mangled job":
        at = draw(st.integers(0, len(data)))
        cut = draw(st.booleans())
        data = data[:at] if cut else data[:at] + draw(st.binary(min_size=1, max_size=3)) + data[at:]
    return data


@settings(max_examples=150, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(items=st.lists(hostile_items(), min_size=1, max_size=6))
def test_random_items_each_end_once_and_the_worker_survives(
    hostile: HostileQueue, items: list[bytes]
) -> None:
    batch = hostile.run(items)  # asserts one outcome per item and well-formed failures
    for index, item in enumerate(items):
        event(f"outcome: {batch.outcome[index]}")
        if batch.outcome[index] == "ok":
            payload = json.loads(item)  # only a decodable job object can succeed
            assert isinstance(payload, dict) and payload["class"] in ("RelEcho", "::RelEcho",
                                                                      "rel-echo", "RelTakesTwo")


# resque_compat.rb's check of a failure's payload (a job object, or null) is stricter than
# resque-web, which shows a String payload (an item that was not JSON) without trouble; spec §14
# allows "payload:null or the raw string". Those are the only complaints allowed here.
PAYLOAD_SHAPE_COMPLAINTS = ("payload is not a JSON object", "payload class ", "payload args ")


def run_check_failures(ruby: str, url: str, namespace: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": url, "RESQUE_NAMESPACE": namespace}
    return subprocess.run([ruby, str(RUBY_CLIENT / "resque_compat.rb"), "check-failures"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_ruby_reads_every_failure_entry(hostile: HostileQueue, ruby: str) -> None:
    hostile.run([item for _name, item, _expected in CORPUS if len(item) < 1000])
    r = hostile.r
    entries = r.lrange(NS + "failed", 0, -1)
    first = run_check_failures(ruby, hostile.server.url, "resque")
    complaints = {}
    for line in first.stderr.split("\n"):  # not splitlines(): items may hold U+2028
        if line.startswith("  #"):
            index = int(line[3:line.index(" ", 3)])
            complaints[index] = line.rsplit("ResqueCompat::Invalid: ", 1)[-1]
    assert first.returncode == (1 if complaints else 0), first.stderr[-3000:]
    for index, message in complaints.items():
        assert message.startswith(PAYLOAD_SHAPE_COMPLAINTS), (index, message)
        assert json.loads(entries[index])["exception"] == DECODE, index
    # Everything else Ruby checks (keys in order, failed_at through DateTime.parse, strings,
    # backtrace, worker id) must hold for every entry: check a copy with those payloads null.
    copies = []
    for index, raw in enumerate(entries):
        if index in complaints:
            entry = json.loads(raw)
            entry["payload"] = None
            raw = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()
        copies.append(raw)
    r.delete("rubycheck:failed")
    r.rpush("rubycheck:failed", *copies)
    second = run_check_failures(ruby, hostile.server.url, "rubycheck")
    assert second.returncode == 0, second.stderr[-3000:]
    checked = [json.loads(line) for line in second.stdout.split("\n") if line]
    assert len(checked) == len(entries)
    print(f"\nRELIABILITY ruby check-failures: entries={len(entries)} "
          f"payload_shape_complaints={len(complaints)} "
          f"not_byte_identical_when_ruby_reencodes={sum(not c['roundtrip'] for c in checked)}")


def test_nul_in_class_name_is_a_failure_not_a_dead_worker() -> None:
    # The class name goes into a single-slot worker's process title; setproctitle refuses a
    # NUL, and that once killed the slot, stopped the worker and put the item back at the head
    # of the queue for the next worker. A worker of its own, so a regression stays here.
    server = RedisServer()
    fleet = Fleet(server.url, "--queues", QUEUE, "--concurrency", "1", "--interval", "0.1")
    try:
        batch = HostileQueue(server, fleet).run([b'{"class":"Rel\\u0000Echo","args":[]}',
                                                 b'{"class":"RelEcho","args":["after"]}'])
        assert batch.outcome == {0: "NameError", 1: "ok"}
    finally:
        fleet.close()
        server.stop()


def test_a_class_name_cannot_forge_log_lines(hostile: HostileQueue) -> None:
    marker = f"FORGED-{uuid.uuid4().hex}"
    forged = f"X\n2026-01-01 00:00:00 INFO {marker} worker stopped\r\x1b[2K{marker}"
    batch = hostile.run([json.dumps({"class": forged, "args": []}).encode()])
    assert batch.outcome == {0: "NameError"}
    lines = hostile.worker.log().split("\n")
    assert not [line for line in lines if line.startswith(("2026-01-01", marker))]
    assert not [line for line in lines if "\r" in line or "\x1b" in line]


# -- payloads are data ---------------------------------------------------------------------------


def test_class_names_are_never_resolved_to_python_objects(hostile: HostileQueue) -> None:
    sentinel = Path(tempfile.gettempdir()) / f"pyresque-pwned-{uuid.uuid4().hex}"
    command = f"touch {sentinel}"
    code = f"__import__('os').system({command!r})"
    classes = ["os.system", "os:system", "builtins.eval", "builtins.exec", "eval", "exec",
               "__import__", "os", "subprocess.call", "posix.system", "importlib.import_module",
               "pickle.loads", "pyresqueworker.worker.runner.load_app", "reliability_jobs.rel_echo",
               "reliability_jobs.RelError", "RelEcho.__init__", "RelEcho.__globals__",
               "__builtins__", "OS.SYSTEM", "Os::System", "os-system"]
    items = [json.dumps({"class": name, "args": [command if i % 2 else code]}).encode()
             for i, name in enumerate(classes)]
    # ActiveJob's wrapper names its job class inside the payload: same rule.
    items.append(json.dumps({
        "class": "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper",
        "args": [{"job_class": "os.system", "job_id": "1", "queue_name": QUEUE,
                  "arguments": [command], "executions": 0, "locale": "en"}]}).encode())
    batch = hostile.run(items)
    assert not sentinel.exists(), "a payload ran a command"
    assert [batch.outcome[i] for i in range(len(items))] == ["NameError"] * len(items)


_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle",
                      "jsonpickle", "yaml"}
_FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def test_package_source_never_uses_pickle_marshal_eval_or_exec() -> None:
    found = []
    for path in sorted((ROOT / "pyresqueworker").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                found += [f"{where} import {a.name}" for a in node.names
                          if a.name.split(".")[0] in _FORBIDDEN_MODULES]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] in _FORBIDDEN_MODULES:
                    found.append(f"{where} from {node.module}")
            elif isinstance(node, ast.Name) and node.id in _FORBIDDEN_CALLS:
                found.append(f"{where} {node.id}")
            elif (isinstance(node, ast.Attribute) and node.attr == "import_module"
                  and path.name != "runner.py"):  # runner: --app, the operator's module name
                found.append(f"{where} import_module")
    assert found == []
