"""Every Python block of README.md runs as shown, top to bottom, on a fresh Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from doc_blocks import ROOT, Block, python_blocks, run_page

README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
# The set-up paragraph of both pages: "This installs what the tests need (Debian's `a`, `b`
# and `c` when missing, ...)".
DEBIAN_NAMED = re.compile(r"This installs what the tests need \(Debian's (.*?) when missing",
                          re.DOTALL)


def test_the_parser_finds_blocks_sections_and_skip_marks() -> None:
    text = ("## A\n```python\nx = 1\n```\n## B\n<!-- readme-test: skip (needs a worker) -->\n"
            "```python\ny = 2\n```\n```sh\nz\n```\n")
    assert python_blocks(text) == [Block(3, "A", "x = 1\n", None),
                                   Block(8, "B", "y = 2\n", "needs a worker")]


def test_every_skipped_block_says_why() -> None:
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no Python blocks"
    assert all(block.skip is None or block.skip for block in blocks), blocks
    # The landing page's example is meant to be run as it stands.
    assert not [block for block in blocks if block.skip is not None]


def test_readme_python_blocks_run_in_order_on_a_fresh_redis(redis_url: str,
                                                            r: redis.Redis) -> None:
    result = run_page(README, redis_url)
    assert result.returncode == 0, result.stderr
    # They ran against the test Redis, not whatever the README's URLs point at.
    assert r.exists("resque:queues")


def debian_packages_of_the_test_command() -> set[str]:
    """What ``scripts/test`` installs with apt-get: each ``need_apt+=(name)``."""
    text = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    return set(re.findall(r"need_apt\+=\(([\w.+-]+)\)", text))


@pytest.mark.parametrize("page", [README, GETTING_STARTED], ids=lambda page: page.name)
def test_the_set_up_names_every_debian_package_the_test_command_installs(page: Path) -> None:
    installs = debian_packages_of_the_test_command()
    assert {"redis-server", "ruby", "chromium", "prometheus"} <= installs, installs
    found = DEBIAN_NAMED.search(page.read_text(encoding="utf-8"))
    assert found, f"{page.name} lost its set-up paragraph"
    named = set(re.findall(r"`([^`]+)`", found.group(1)))
    assert named == installs, (f"{page.name}: missing {sorted(installs - named)}, "
                               f"not installed {sorted(named - installs)}")
