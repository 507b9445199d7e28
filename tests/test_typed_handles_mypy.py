"""mypy checks what job handles are called and enqueued with (the ParamSpec typing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

GOOD = '''
from pyresqueworker import JobHandle, job, default_registry


@job("Square", queue="math")
def square(n: int) -> int:
    return n * n


@job
async def fetch(url: str, retries: int = 3) -> bytes:
    return url.encode()


@job("Mailer::Deliver", queue="mail")
class Deliver:
    def perform(self, to: str, subject: str = "hi") -> None: ...


deliver = default_registry.handle_for(Deliver)
ruby_any = JobHandle("Ruby::Anything", queue="q")
ruby_typed: JobHandle[[str, int], None] = JobHandle("Ruby::Typed", queue="q")

answer: int = square(3)
item: str = square.enqueue(3)
square.enqueue(n=3)
square.enqueue_to("other", 4)
square.enqueue_in(60, 5)
square.enqueue_at(1700000000.0, 6)
deliver.enqueue("a@b", subject="yo")
ruby_any.enqueue(1, "two", [3])
ruby_typed.enqueue("x", 1)


async def main() -> None:
    body: bytes = await fetch("u")
    await fetch.aenqueue("u", retries=1)
    await square.aenqueue_to("other", 1)
    await deliver.aenqueue_in(5, "a@b")
'''

BAD = '''
from pyresqueworker import JobHandle, job, default_registry


@job("Square", queue="math")
def square(n: int) -> int:
    return n * n


@job("Mailer::Deliver", queue="mail")
class Deliver:
    def perform(self, to: str) -> None: ...


ruby_typed: JobHandle[[str, int], None] = JobHandle("Ruby::Typed", queue="q")

square.enqueue("x")  # line 17
default_registry.handle_for(Deliver).enqueue(7)  # line 18
ruby_typed.enqueue("x", "y")  # line 19
square.enqueue_to("q", 1, 2)  # line 20
square.enqueue(m=1)  # line 21
'''


@pytest.mark.slow
def test_mypy_rejects_wrong_arguments_and_accepts_right_ones(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    env = {**os.environ, "MYPYPATH": str(ROOT)}  # the package as it is in this tree
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
         str(tmp_path / "cache"), "--hide-error-context", "good.py", "bad.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not [line for line in errors if not line.startswith("bad.py")], result.stdout
    by_line = {int(m.group(1)): line for line in errors
               if (m := re.match(r"bad\.py:(\d+): error:", line))}
    assert 'Argument 1 to "enqueue" of "JobHandle" has incompatible type "str"; ' \
           'expected "int"  [arg-type]' in by_line[17]
    assert 'Argument 1 to "enqueue" of "JobHandle" has incompatible type "int"; ' \
           'expected "str"  [arg-type]' in by_line[18]
    assert 'Argument 2 to "enqueue" of "JobHandle" has incompatible type "str"; ' \
           'expected "int"  [arg-type]' in by_line[19]
    assert 'Too many arguments for "enqueue_to" of "JobHandle"' in by_line[20]
    assert 'Unexpected keyword argument "m" for "enqueue" of "JobHandle"' in by_line[21]
    assert sorted(by_line) == [17, 18, 19, 20, 21], result.stdout
    assert result.returncode == 1
