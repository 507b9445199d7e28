"""Every Python block of README.md runs as shown, top to bottom, on a fresh Redis.

The blocks read as one session (the client section defines ``client``, later sections use it),
so they run in order in one namespace of globals, in a child interpreter: the ``@job``
registrations they make land in a fresh ``default_registry``, not in the one other tests in
this process use. The README's Redis URLs, and ``REDIS_URL`` for the blocks that use the
default, point at the test Redis. A block that cannot run here is marked in the README by the
line ``<!-- readme-test: skip (why) -->`` right before its fence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import redis

README = Path(__file__).resolve().parent.parent / "README.md"
README_URLS = ("redis://127.0.0.1:6379/0", "redis://localhost:6379/0")
SKIP_MARK = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->\s*$")

# Runs in the child: each block compiled under the README's own line numbers, so a traceback
# points at the README line that failed.
RUNNER = """
import json, sys, traceback
path, blocks = sys.argv[1], json.load(sys.stdin)
scope = {"__name__": "readme"}
for block in blocks:
    code = compile("\\n" * (block["line"] - 1) + block["code"], path, "exec")
    try:
        exec(code, scope)
    except BaseException:
        print(f"README.md line {block['line']} ({block['section']}):", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


@dataclass(frozen=True)
class Block:
    """One fenced Python block: where it starts, its section, its code, and why it is skipped."""

    line: int  # 1-based README line of the block's first line of code
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
        if line.startswith("## "):
            section = line[3:].strip()
        if line.strip() == "```python":
            end = lines.index("```", index + 1)
            mark = SKIP_MARK.match(lines[index - 1]) if index else None
            blocks.append(Block(index + 2, section, "\n".join(lines[index + 1:end]) + "\n",
                                mark.group("reason").strip() if mark else None))
            index = end
        index += 1
    return blocks


def test_the_parser_finds_blocks_sections_and_skip_marks() -> None:
    text = ("## A\n```python\nx = 1\n```\n## B\n<!-- readme-test: skip (needs a worker) -->\n"
            "```python\ny = 2\n```\n```sh\nz\n```\n")
    assert python_blocks(text) == [Block(3, "A", "x = 1\n", None),
                                   Block(8, "B", "y = 2\n", "needs a worker")]


def test_every_skipped_block_says_why() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no Python blocks"
    skipped = [block for block in blocks if block.skip is not None]
    assert all(block.skip for block in skipped), skipped
    # Skips are the exception: most of the README must stay executable.
    assert len(skipped) * 4 <= len(blocks), [block.line for block in skipped]


def test_readme_python_blocks_run_in_order_on_a_fresh_redis(redis_url: str,
                                                            r: redis.Redis) -> None:
    blocks = [block for block in python_blocks(README.read_text(encoding="utf-8"))
              if block.skip is None]
    for url in README_URLS:
        blocks = [Block(b.line, b.section, b.code.replace(url, redis_url), b.skip)
                  for b in blocks]
    env = {**os.environ, "REDIS_URL": redis_url, "RESQUE_REDIS_URL": redis_url,
           "PYRESQUE_REDIS": redis_url}
    result = subprocess.run([sys.executable, "-c", RUNNER, str(README)],
                            input=json.dumps([asdict(block) for block in blocks]), env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    # They ran against the test Redis, not whatever the README's URLs point at.
    assert r.exists("resque:queues")
