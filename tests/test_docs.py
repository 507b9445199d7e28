"""The documentation site: every page's Python runs, the nav holds every guide, nothing invented.

``scripts/test`` builds the site with ``mkdocs build --strict`` (broken links, anchors and
docstrings fail there); these tests check what the build cannot: that the code shown works,
that the guides the project promises are in the nav, that the README's links land on pages
and headings that exist, and that every command-line flag a page mentions is a real one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import redis
import yaml
from doc_blocks import ROOT, Block, bound_and_free, python_blocks, run_page

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
RUNNABLE = [page for page in PAGES
            if any(block.skip is None
                   for block in python_blocks(page.read_text(encoding="utf-8")))]
# Pages with a block that stands alone (neither skipped nor continued from above).
README = ROOT / "README.md"
STANDALONE = [page for page in [*PAGES, README]
              if any(block.skip is None and not block.needs
                     for block in python_blocks(page.read_text(encoding="utf-8")))]
GITHUB_DOCS = "https://github.com/pyresqueworker/pyresqueworker/blob/main/docs/"
# The guides issue 14 lists, and the pages that carry the rest of the old README.
GUIDES = ("getting-started.md", "ruby.md", "worker.md", "reliability.md", "scheduling.md",
          "cli.md", "dashboard.md", "metrics.md", "logging.md", "deployment.md",
          "migrating.md", "client.md", "jobs.md", "job-features.md", "async-jobs.md",
          "speed.md", "dependencies.md", "differences.md", "async-client.md",
          "typed-jobs.md", "django.md", "fastapi.md", "workflows.md")
# Flags of other programs that pages show (pip, redis-cli, mkdocs, useradd, systemctl, ...).
FOREIGN_FLAGS = {"--cluster", "--strict", "--site-dir", "--no-cache-dir", "--sentinel",
                 "--create-home", "--uid", "--value"}


def nav_files(nav: Any) -> Iterator[str]:
    """Every page file named in a mkdocs ``nav`` (lists of ``{title: file or list}``)."""
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from nav_files(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from nav_files(value)


def mkdocs_nav() -> set[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return set(nav_files(config["nav"]))


def github_slug(heading: str) -> str:
    """The anchor GitHub (and mkdocs' toc, for these headings) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))
    return {github_slug(line.lstrip("#")) for line in text.splitlines()
            if re.match(r"#{1,6} ", line)}


def real_flags() -> set[str]:
    """Long options of every command this package installs, subcommands included."""
    from pyresqueworker.cli.admin.cli import main as admin
    from pyresqueworker.cli.demo import demo
    from pyresqueworker.cli.scheduler import main as scheduler
    from pyresqueworker.cli.work import work

    flags: set[str] = set()
    commands: list[click.Command] = [work, admin, demo, scheduler]
    while commands:
        command = commands.pop()
        for param in command.params:
            for option in (*param.opts, *param.secondary_opts):
                flags.add(option.split("=")[0])
        if isinstance(command, click.Group):
            commands.extend(command.commands.values())
    scripts = "".join(path.read_text(encoding="utf-8")
                      for name in ("bench", "soak")
                      for path in [ROOT / "scripts" / f"{name}.py",
                                   *(ROOT / "scripts" / f"{name}kit").glob("*.py")])
    return flags | set(re.findall(r"""["'](--[a-z][a-z0-9-]*)["']""", scripts))


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(DOCS)) for p in RUNNABLE])
def test_page_python_blocks_run_in_order_on_a_fresh_redis(page: Path, redis_url: str,
                                                          r: redis.Redis) -> None:
    result = run_page(page, redis_url)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("page", STANDALONE,
                         ids=[str(p.relative_to(DOCS)) if p.is_relative_to(DOCS) else p.name
                              for p in STANDALONE])
def test_page_python_blocks_run_each_on_its_own_on_a_fresh_redis(page: Path, redis_url: str,
                                                                 r: redis.Redis) -> None:
    """A reader copies one block: it runs by itself (fresh globals, registry and Redis),
    unless its first line says what it takes from above (``# continued from above: ...``)."""
    result = run_page(page, redis_url, alone=True)
    assert result.returncode == 0, result.stderr


def test_a_block_continued_from_above_names_what_it_takes_and_above_has_it() -> None:
    for page in [*PAGES, README]:
        blocks = [block for block in python_blocks(page.read_text(encoding="utf-8"))
                  if block.skip is None]
        defined: set[str] = set()
        for block in blocks:
            where = f"{page.name} line {block.line}"
            bound, free = bound_and_free(block.code)
            if block.needs:
                assert set(block.needs) <= defined, (where, set(block.needs) - defined)
                assert free <= set(block.needs), (where, "also needs", free - set(block.needs))
            defined |= bound


def test_the_parser_reads_what_a_block_continued_from_above_needs() -> None:
    text = ("## A\n```python\nx, y = 1, 2\n```\n```python\n"
            "# continued from above: x,y\nprint(x + y)\n```\n"
            "```python\n# continued from above, sort of\n```\n")
    assert python_blocks(text) == [
        Block(3, "A", "x, y = 1, 2\n", None),
        Block(6, "A", "# continued from above: x,y\nprint(x + y)\n", None, ("x", "y")),
        Block(10, "A", "# continued from above, sort of\n", None)]
    assert bound_and_free("import os.path as p\nfor i in x: print(p, i, len(y))\n") == (
        {"p", "i"}, {"x", "y"})


def test_alone_each_block_gets_fresh_globals_registry_and_redis(tmp_path: Path, redis_url: str,
                                                                 r: redis.Redis) -> None:
    """What ``alone`` promises, on a page of blocks that lean on the one before them."""
    page = tmp_path / "page.md"
    page.write_text("\n".join([
        "## Set up", "```python",
        "from pyresqueworker import Client, job",
        "x = 1",
        '@job("Probe", queue="probe")',
        "def probe() -> None: ...",
        'Client("redis://127.0.0.1:6379/0").enqueue("Probe")',
        "```",
        "## Leaning on it", "```python",
        "print(x)",
        "```", "```python",
        "from pyresqueworker.testing import run_inline",
        'run_inline({"class": "Probe", "args": []})',
        "```", "```python",
        "from pyresqueworker import Client",
        'assert Client("redis://127.0.0.1:6379/0").size("probe") == 1',
        "```", "```python",
        "# continued from above: x",
        "assert x == 1",
        "```", ""]), encoding="utf-8")
    assert run_page(page, redis_url).returncode == 0
    result = run_page(page, redis_url, alone=True)
    assert result.returncode == 1
    failed = re.findall(r"page\.md line (\d+) ", result.stderr)
    assert failed == ["11", "14", "18"], result.stderr
    assert "NameError: name 'x'" in result.stderr
    assert "uninitialized constant Probe" in result.stderr


def test_skipped_blocks_say_why_and_stay_the_exception() -> None:
    blocks = [block for page in PAGES
              for block in python_blocks(page.read_text(encoding="utf-8"))]
    assert len(blocks) >= 20, len(blocks)
    skipped = [block for block in blocks if block.skip is not None]
    assert all(block.skip for block in skipped), skipped
    assert len(skipped) * 4 <= len(blocks), [(block.section, block.line) for block in skipped]


def test_every_guide_is_in_the_nav_and_every_page_too() -> None:
    nav = mkdocs_nav()
    missing = [guide for guide in GUIDES if guide not in nav]
    assert not missing, missing
    orphans = [str(page.relative_to(DOCS)) for page in PAGES
               if str(page.relative_to(DOCS)) not in nav]
    assert not orphans, orphans
    assert all((DOCS / name).is_file() for name in nav), nav


def test_readme_links_to_the_guides_and_each_link_lands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(re.escape(GITHUB_DOCS) + r"([\w/.-]+)(?:#([\w-]+))?\)", text)
    assert {name for name, _ in links} >= {"getting-started.md", "worker.md", "ruby.md",
                                           "deployment.md", "migrating.md"}, links
    for name, anchor in links:
        page = DOCS / name
        if name.endswith(".png"):
            assert page.is_file(), name
            continue
        assert page.is_file() and name in mkdocs_nav(), name
        assert not anchor or anchor in anchors(page), f"{name}#{anchor}"


def test_every_flag_a_page_shows_exists() -> None:
    known = real_flags() | FOREIGN_FLAGS
    shown = {(flag, page.name) for page in [*PAGES, ROOT / "README.md"]
             for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*",
                                    page.read_text(encoding="utf-8"))}
    invented = sorted(pair for pair in shown if pair[0] not in known)
    assert not invented, invented


def test_the_kubernetes_deployment_outwaits_the_shutdown_timeout() -> None:
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    manifests = [document
                 for block in re.findall(r"(?ms)^```yaml\n(.*?)^```", text)
                 for document in yaml.safe_load_all(block) if document]
    kinds = {manifest.get("kind") for manifest in manifests}
    assert {"Deployment", "ScaledObject"} <= kinds, kinds
    deployment = next(m for m in manifests if m.get("kind") == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    timeout = float(args[args.index("--shutdown-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > timeout
    scaled = next(m for m in manifests if m.get("kind") == "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"].startswith("resque:queue:")
