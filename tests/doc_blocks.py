"""Running the Python blocks of a Markdown page (README.md, docs/*.md) as a reader would.

A page's blocks read as one session (an early block defines ``client``, later ones use it), so
they run in order in one namespace of globals, in a child interpreter: the ``@job``
registrations they make land in a fresh ``default_registry``, not in the one other tests in
this process use. The page's Redis URLs, and ``REDIS_URL`` for the blocks that use the default,
point at the test Redis. A block that cannot run here is marked on the page by the line
``<!-- readme-test: skip (why) -->`` right before its fence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
PAGE_URLS = ("redis://127.0.0.1:6379/0", "redis://localhost:6379/0")
SKIP_MARK = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->\s*$")

# Runs in the child: each block compiled under the page's own line numbers, so a traceback
# points at the line of the page that failed.
RUNNER = """
import json, sys, traceback
path, blocks = sys.argv[1], json.load(sys.stdin)
scope = {"__name__": "readme"}
for block in blocks:
    code = compile("\\n" * (block["line"] - 1) + block["code"], path, "exec")
    try:
        exec(code, scope)
    except BaseException:
        print(f"{path} line {block['line']} ({block['section']}):", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


@dataclass(frozen=True)
class Block:
    """One fenced Python block: where it starts, its section, its code, and why it is skipped."""

    line: int  # 1-based line of the page holding the block's first line of code
    section: str
    code: str
    skip: Optional[str]


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
            blocks.append(Block(index + 2, section, "\n".join(lines[index + 1:end]) + "\n",
                                mark.group("reason").strip() if mark else None))
            index = end
        index += 1
    return blocks


def run_page(path: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    """Run the page's unskipped blocks in order in a child interpreter against ``redis_url``."""
    blocks = [block for block in python_blocks(path.read_text(encoding="utf-8"))
              if block.skip is None]
    for url in PAGE_URLS:
        blocks = [replace(block, code=block.code.replace(url, redis_url)) for block in blocks]
    env = {**os.environ, "REDIS_URL": redis_url, "RESQUE_REDIS_URL": redis_url,
           "PYRESQUE_REDIS": redis_url}
    return subprocess.run([sys.executable, "-c", RUNNER, str(path.relative_to(ROOT))],
                          input=json.dumps([asdict(block) for block in blocks]), env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
