"""mypy checks what job handles are called and enqueued with (the ParamSpec typing)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPED_JOBS = ROOT / "docs" / "typed-jobs.md"

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


def promised_example() -> tuple[str, list[str]]:
    """The example under docs/typed-jobs.md's "The mypy error you get", and what mypy says."""
    text = TYPED_JOBS.read_text(encoding="utf-8")
    section = text.split("\n## The mypy error you get\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"(?ms)^```python\n(.*?)^```", section)
    errors = re.search(r"(?ms)^```text\n(.*?)^```", section)
    assert code and errors, section
    return code.group(1), errors.group(1).splitlines()


def test_the_promised_example_is_where_the_install_test_reads_it() -> None:
    code, errors = promised_example()
    assert "from pyresqueworker import job" in code
    assert len(errors) == 2 and all(line.startswith("example.py:") for line in errors), errors


@pytest.mark.slow
def test_mypy_sees_the_editable_install_of_the_readme(tmp_path: Path) -> None:
    """The README's `pip install -e` and then mypy --strict in another folder: the errors
    docs/typed-jobs.md promises, not `Cannot find implementation or library stub for module
    named "pyresqueworker"`. mypy and pyright read the paths of a .pth file but cannot follow
    the import hook setuptools installs for a layout it does not find simple (issue 24)."""
    pytest.importorskip("mypy", reason="the test extra's mypy is not installed")
    specs = [importlib.util.find_spec(name) for name in ("pip", "setuptools", "wheel")]
    if specs[0] is None or specs[1] is None:
        pytest.skip("needs pip and setuptools to install offline")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # Offline, so the venv borrows this interpreter's pip and build tools (pip installs the
    # project without build isolation), and gives them back before mypy looks at it: then mypy
    # can find pyresqueworker only through what the install itself wrote into the venv.
    borrowed = Path(purelib) / "borrowed-build-tools.pth"
    borrowed.write_text("".join(f"{Path(spec.origin).parent.parent}\n"
                                for spec in specs if spec and spec.origin))
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "MYPYPATH", "PYTHONHOME")}
    install = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
         "--no-deps", "--no-build-isolation", "-e", str(ROOT)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    borrowed.unlink()
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Python finds the checkout's package (found, not imported: its dependencies are not here).
    where = "import importlib.util as u; print(u.find_spec('pyresqueworker').origin)"
    probe = subprocess.run([python, "-c", where], cwd=elsewhere, env=env, capture_output=True,
                           text=True, timeout=60)
    assert probe.stdout.strip() == str(ROOT / "pyresqueworker" / "__init__.py"), probe.stderr

    code, promised = promised_example()
    (elsewhere / "example.py").write_text(code, encoding="utf-8")
    # --python-executable: mypy takes its installed packages from the venv's interpreter alone.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-executable", python, "--strict",
         "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), "example.py"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.splitlines() == promised, result.stdout + result.stderr
    assert result.returncode == 1
