"""Running the Python blocks of a Markdown page (README.md, docs/*.md) as a reader would.

A page's blocks are run twice, each time in a child interpreter, so the ``@job``
registrations they make never land in the ``default_registry`` other tests in this process
use; the page's Redis URLs, and ``REDIS_URL`` for the blocks that use the default, point at the
test Redis.

- In order, in one namespace of globals, as someone running the page top to bottom would.
- Each on its own (``alone=True``), as someone who copies one block would: every block runs
  in a fresh process forked from a child that has imported only ``pyresqueworker``, with fresh
  globals, an empty job registry and a flushed Redis. A block that does not stand alone
  says so where the reader sees it, as its first line: ``# continued from above: client,
  archive`` names what it takes from the blocks before it (``needs``); it runs in order only.

A block that cannot run here at all is marked on the page by the line
``<!-- readme-test: skip (why) -->`` right before its fence.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
PAGE_URLS = ("redis://127.0.0.1:6379/0", "redis://localhost:6379/0")
SKIP_MARK = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->\s*$")
CONTINUED_MARK = re.compile(r"^#\s*continued from above:\s*(?P<names>\w+(?:\s*,\s*\w+)*)\s*$")

# Runs in the child: ``path mode redis_url``, the blocks on stdin. Each block is compiled under
# the page's own line numbers, so a traceback points at the line of the page that failed. In
# order it stops at the first failure; alone it reports every block that fails.
RUNNER = """
import json, os, sys, traceback
path, mode, redis_url = sys.argv[1:]
blocks = json.load(sys.stdin)

def run(block, scope):
    code = compile("\\n" * (block["line"] - 1) + block["code"], path, "exec")
    try:
        exec(code, scope)
    except BaseException:
        print(f"{path} line {block['line']} ({block['section']}):", file=sys.stderr)
        traceback.print_exc()
        return False
    return True

if mode == "in-order":
    scope = {"__name__": "readme"}
    sys.exit(0 if all(run(block, scope) for block in blocks) else 1)

# Imported once, before the forks: what nearly every block imports first (and this child
# registers no job, so each fork starts with an empty registry).
import pyresqueworker, redis

failed = False
for block in blocks:
    with redis.Redis.from_url(redis_url) as server:
        server.flushall()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # a normal exit, so atexit handlers and non-daemon threads finish as usual
        sys.exit(0 if run(block, {"__name__": "readme"}) else 1)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status < 0:
        print(f"{path} line {block['line']} ({block['section']}): killed by signal {-status}",
              file=sys.stderr)
    failed |= status != 0
sys.exit(1 if failed else 0)
"""


@dataclass(frozen=True)
class Block:
    """One fenced Python block: where it starts, its section, its code, why it is skipped,
    and what it takes from the blocks above it (empty: it stands alone)."""

    line: int  # 1-based line of the page holding the block's first line of code
    section: str
    code: str
    skip: Optional[str]
    needs: tuple[str, ...] = ()


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, in order."""
    blocks: list[Block] = []
    lines = text.split("\n")
    section, index = "", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(("# ", "## ")):
            section = line.lstrip("#").strip()
        if line.strip() == "```python":
            end = lines.index("```", index + 1)
            mark = SKIP_MARK.match(lines[index - 1]) if index else None
            continued = CONTINUED_MARK.match(lines[index + 1]) if end > index + 1 else None
            blocks.append(Block(index + 2, section, "\n".join(lines[index + 1:end]) + "\n",
                                mark.group("reason").strip() if mark else None,
                                tuple(name.strip() for name in
                                      continued.group("names").split(","))
                                if continued else ()))
            index = end
        index += 1
    return blocks


def bound_and_free(code: str) -> tuple[set[str], set[str]]:
    """The names a block binds (anywhere in it) and the ones it uses without binding them,
    builtins aside. Generous with ``bound``: a function's local counts, so ``free`` holds
    only names the block cannot run without."""
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, used - bound - set(dir(builtins))


def run_page(path: Path, redis_url: str, *,
             alone: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the page's unskipped blocks against ``redis_url`` in a child interpreter: in order
    in one namespace, or with ``alone`` each block that stands alone by itself."""
    blocks = [block for block in python_blocks(path.read_text(encoding="utf-8"))
              if block.skip is None and not (alone and block.needs)]
    for url in PAGE_URLS:
        blocks = [replace(block, code=block.code.replace(url, redis_url)) for block in blocks]
    env = {**os.environ, "REDIS_URL": redis_url, "RESQUE_REDIS_URL": redis_url,
           "PYRESQUE_REDIS": redis_url}
    name = os.path.relpath(path, ROOT)
    args = [sys.executable, "-c", RUNNER, name, "alone" if alone else "in-order", redis_url]
    # A session of its own, so a timeout takes the forks and whatever the blocks started too.
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True,
                          start_new_session=True) as child:
        try:
            out, err = child.communicate(json.dumps([asdict(block) for block in blocks]),
                                         timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(args, child.returncode, out, err)
