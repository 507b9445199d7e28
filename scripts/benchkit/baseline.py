"""``--baseline REF``: our worker at another git revision, measured beside this checkout's.

``checkout(REF)`` writes the revision's tree into a temporary directory with ``git archive``
(no git state changes: no worktree, no checkout, safe beside other work in the same
repository), checks that a process started there imports *that* ``pyresqueworker``, and
removes the directory on the way out, also on Ctrl-C or SIGTERM. Its worker runs as a system
of its own, labelled ``ours@<short sha>`` (see :class:`benchkit.common.Checkout`), and
:class:`Pairing` puts it beside each of our systems, so the interleaving, medians and tables
of the peers carry over; ``benchkit.compare`` sets the two side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Optional

from benchkit import jobs as bj
from benchkit.common import Checkout, System
from benchkit.proc import package_env

__all__ = ["Pairing", "checkout", "console_entry", "is_ours", "twin"]

ROOT = Path(__file__).resolve().parents[2]
# pyresque-work = module:function, in setup.cfg's console_scripts or pyproject's [project.scripts]
_ENTRY = re.compile(r'^\s*"?pyresque-work"?\s*=\s*"?([\w.]+:[\w.]+)"?\s*$', re.MULTILINE)


def _git(ref: str, *args: str) -> str:
    """A read-only git command in this repository; its output, stripped."""
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        why = done.stderr.strip() or "not a commit of this repository"
        raise SystemExit(f"bench.py: --baseline {ref}: {why}")
    return done.stdout.strip()


def resolve(ref: str) -> tuple[str, str]:
    """(full sha, short sha) of the commit ``ref`` names in this repository."""
    if shutil.which("git") is None:
        raise SystemExit("bench.py: --baseline needs git")
    sha = _git(ref, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return sha, _git(ref, "rev-parse", "--short", sha)


def console_entry(root: Path) -> str:
    """What the ``pyresque-work`` console script of the tree at ``root`` runs."""
    for name in ("setup.cfg", "pyproject.toml"):
        path = root / name
        found = _ENTRY.search(path.read_text()) if path.is_file() else None
        if found:
            return found.group(1)
    return bj.OURS_ENTRY


def _extract(sha: str, into: str) -> None:
    """The tree of commit ``sha`` written into the directory ``into`` (``git archive | tar``)."""
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", "--format=tar", sha],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert archive.stdout is not None
    untar = subprocess.run(["tar", "-x", "-C", into], stdin=archive.stdout,
                           capture_output=True, check=False)
    archive.stdout.close()
    _, err = archive.communicate()
    if archive.returncode or untar.returncode:
        why = (err or untar.stderr).decode("utf-8", "replace").strip()
        raise SystemExit(f"bench.py: --baseline: git archive {sha[:12]} | tar -x: {why}")


def _check(code: Checkout) -> None:
    """Compile the tree's package (so no worker's start-up pays for it), then check that a
    worker started there imports its package and entry, not this checkout's."""
    package = Path(code.root) / "pyresqueworker"
    if not (package / "__init__.py").is_file():
        raise SystemExit(f"bench.py: --baseline {code.ref}: no pyresqueworker package there")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)],
                   capture_output=True, check=False)
    module, _, function = code.entry.partition(":")
    probe = (f"import pyresqueworker, {module} as m; getattr(m, {function!r}); "
             "print(pyresqueworker.__file__)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=code.root, capture_output=True,
                          text=True, env={**os.environ, **package_env(code.root)}, check=False)
    where = done.stdout.strip()
    if done.returncode != 0 or not Path(where).resolve().is_relative_to(Path(code.root)
                                                                           .resolve()):
        raise SystemExit(f"bench.py: --baseline {code.ref}: its worker would not run from "
                         f"{code.root}: {where or done.stderr.strip()[-500:]}")


def _raise_exit(signum: int, _frame: Optional[FrameType]) -> None:
    raise SystemExit(128 + signum)  # unwinds the with-blocks: workers, Redis, the directory


@contextmanager
def checkout(ref: str) -> Iterator[Checkout]:
    """The package at git revision ``ref`` in a temporary directory, removed on exit."""
    sha, short = resolve(ref)
    root = tempfile.mkdtemp(prefix=f"pyresque-bench-{short}-")
    handler = None  # SIGTERM cleans up like Ctrl-C (signal handlers: the main thread only)
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        _extract(sha, root)
        code = Checkout(f"ours@{short}", root, console_entry(Path(root)), ref, sha)
        _check(code)
        yield code
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def is_ours(system: System) -> bool:
    """One of our worker systems at this checkout's version (floors and enqueue rows run in
    the bench's own process and are not workers)."""
    return system.framework == "pyresque" and system.checkout is None


def twin(system: System, code: Checkout) -> System:
    """``system`` run on ``code``'s worker: "ours 1 proc x 1 slot" -> "ours@abc1234 1 proc x
    1 slot"."""
    label = system.label
    label = code.name + label[4:] if label.startswith("ours") else f"{code.name} {label}"
    return replace(system, label=label, checkout=code)


class Pairing:
    """Our systems each with its twin on the baseline, the baseline first on even runs (run
    1, 3, ...) and second on odd ones, so an order effect cancels over an even number of runs.
    Without a baseline every system is run alone."""

    def __init__(self, code: Optional[Checkout]) -> None:
        self.code = code
        self.run = 0  # the run being driven, from 0

    def __call__(self, system: System) -> list[System]:
        if self.code is None or not is_ours(system):
            return [system]
        pair = [twin(system, self.code), system]
        return pair if self.run % 2 == 0 else pair[::-1]

    def each(self, systems: Iterable[System]) -> list[System]:
        return [s for system in systems for s in self(system)]
