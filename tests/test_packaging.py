"""What a published package holds: the sdist runs its own tests, the wheel runs the demo.

The build runs offline (``python -m build --no-isolation``, with the build tools of the ``test``
extra) on a copy of the source tree, so stale ``build/`` or ``*.egg-info`` directories of the
checkout cannot add files the published archives would lack.
"""

from __future__ import annotations

import configparser
import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from fnmatch import fnmatch
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from test_demo import ruby_and_gem

from pyresqueworker import __version__

ROOT = Path(__file__).resolve().parent.parent
GITHUB = "https://github.com/pyresqueworker/pyresqueworker"
# Directories of a working tree that are not part of the project.
NOT_SOURCE = (".git", "__pycache__", "*.egg-info", "build", "dist", ".mypy_cache",
              ".ruff_cache", ".pytest_cache", ".hypothesis", ".benchmarks", "*.pyc",
              "node_modules")  # (npm ci makes it from tests/node's lock file)
# Markdown links and images: [text](target) and ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# pip before 23.3 (the pip Python 3.9 to 3.12 come with) can backtrack for many minutes when
# the newest release of a package the [test] tree asks for with an extra (X[extra]) cannot
# install on the running Python and the index does not say so up front (a local index or a
# mirror without Requires-Python data; from PyPI pip skips such releases unseen). For each such
# package (ours: fakeredis[lua], mkdocstrings[python]; selenium's urllib3[socks]): its newest
# release, which every Python it did not drop must still get, and for each Python it dropped,
# the last release that installs there and the first that does not (PyPI, measured for issue
# 24; docs/getting-started.md). A new requirement with an extra needs its line here.
ASKED_WITH_AN_EXTRA: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "fakeredis": ("2.41.0", {}),
    "mkdocstrings": ("1.0.8", {"3.9": ("0.30.1", "1.0.0"), "3.10": ("1.0.6", "1.0.7")}),
    "urllib3": ("2.8.0", {"3.9": ("2.6.3", "2.7.0")}),
}
UPPER_BOUNDS = ("<", "<=", "==", "===", "~=")


@dataclass(frozen=True)
class Built:
    """The archives built from the source tree, and their file lists."""

    source: Path
    sdist: Path
    wheel: Path
    sdist_files: frozenset[str]  # paths inside the sdist's top directory
    wheel_files: frozenset[str]

    def metadata(self) -> Message:
        """The wheel's METADATA (core metadata, as PyPI shows it)."""
        with zipfile.ZipFile(self.wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            return email.message_from_bytes(archive.read(name))


def source_files(root: Path, under: str) -> set[str]:
    """Files of the source tree under ``under``, as relative POSIX paths."""
    found = set()
    for path in (root / under).rglob("*"):
        parts = path.relative_to(root).parts
        if path.is_file() and not any(fnmatch(part, pattern)
                                      for part in parts for pattern in NOT_SOURCE):
            found.add("/".join(parts))
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    pytest.importorskip("build", reason="the test extra's `build` is not installed")
    pytest.importorskip("wheel", reason="the test extra's `wheel` is not installed")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    # symlinks=True: pyresqueworker/ruby_client stays the link to examples/ruby_client it is in
    # the checkout, not a second copy of the Ruby client.
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = work / "dist"
    # --sdist --wheel builds the wheel from the unpacked sdist: the sdist must be complete.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "-o", str(out),
         str(source)], capture_output=True, text=True, timeout=300, cwd=work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sdist = next(out.glob("*.tar.gz"))
    wheel = next(out.glob("*.whl"))
    with tarfile.open(sdist) as archive:
        top = f"pyresqueworker-{__version__}/"
        sdist_files = frozenset(m.name[len(top):] for m in archive.getmembers()
                                if m.isfile() and m.name.startswith(top))
    with zipfile.ZipFile(wheel) as archive:
        wheel_files = frozenset(archive.namelist())
    yield Built(source, sdist, wheel, sdist_files, wheel_files)


@pytest.mark.slow
def test_license_is_in_the_sdist_and_the_wheel(built: Built) -> None:
    assert "LICENSE" in built.sdist_files
    licenses = [name for name in built.wheel_files
                if ".dist-info/" in name and name.endswith("/LICENSE")]
    assert licenses, sorted(built.wheel_files)
    with zipfile.ZipFile(built.wheel) as archive:
        text = archive.read(licenses[0]).decode()
    assert text.startswith("MIT License") and "pyresqueworker contributors" in text


@pytest.mark.slow
def test_the_sdist_holds_everything_its_tests_need(built: Built) -> None:
    for name in ("tests/conftest.py", "tests/golden/worker-state.json",
                 "tests/apps/worker_jobs.py", "examples/ruby_client/resque_compat.rb",
                 "scripts/bench.py", "pyproject.toml", "README.md", "CHANGELOG.md"):
        assert name in built.sdist_files, name
    for under in ("tests", "examples", "scripts", "deploy", "pyresqueworker"):
        missing = source_files(built.source, under) - built.sdist_files
        assert not missing, f"not in the sdist: {sorted(missing)}"


@pytest.mark.slow
def test_the_wheel_holds_every_module_the_ruby_client_and_py_typed(built: Built) -> None:
    assert "pyresqueworker/py.typed" in built.wheel_files
    for ruby_file in ("resque_compat.rb", "pyresque_tracking.rb", "pyresque_workflow.lua"):
        # (protocol.workflow reads the Lua when imported: a wheel without it cannot start)
        assert f"pyresqueworker/ruby_client/{ruby_file}" in built.wheel_files
    # setup.cfg lists the packages by hand: a new subpackage must not be left out.
    package_files = {name for name in source_files(built.source, "pyresqueworker")
                     if name.endswith((".py", ".html", ".css", ".js"))}
    missing = package_files - built.wheel_files
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert not any(name.startswith(("tests/", "examples/")) for name in built.wheel_files)


@pytest.mark.slow
def test_the_wheel_metadata_describes_the_project(built: Built) -> None:
    meta = built.metadata()
    assert meta["Version"] == __version__
    assert meta["Author"] == "pyresqueworker contributors"
    assert meta["License"] == "MIT"
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Source", "Issues", "Changelog"}
    assert all(url.startswith(GITHUB) for url in urls.values())
    classifiers = meta.get_all("Classifier") or []
    for expected in ("License :: OSI Approved :: MIT License", "Development Status :: 4 - Beta",
                     "Typing :: Typed", *(f"Programming Language :: Python :: 3.{minor}"
                                          for minor in range(9, 14))):
        assert expected in classifiers
    trove = pytest.importorskip("trove_classifiers")
    unknown = set(classifiers) - set(trove.classifiers)
    assert not unknown, unknown  # PyPI refuses an upload with an unknown classifier
    keywords = meta["Keywords"].split(",")
    assert "resque" in keywords and all(word.strip() for word in keywords), keywords
    assert meta["Description-Content-Type"] == "text/markdown"


@pytest.mark.slow
def test_the_demo_installed_from_the_wheel_enqueues_with_ruby(built: Built, redis_url: str,
                                                               tmp_path: Path) -> None:
    if not ruby_and_gem():
        pytest.skip("needs ruby and its redis gem")
    site = tmp_path / "site"
    with zipfile.ZipFile(built.wheel) as archive:  # a pure-Python wheel installs by unpacking
        archive.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("REDIS_URL", None)
    # cwd is not the checkout, so the import finds the unpacked wheel, not the source tree.
    probe = subprocess.run(
        [sys.executable, "-c", "import pyresqueworker; print(pyresqueworker.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert probe.stdout.startswith(str(site)), probe.stdout + probe.stderr
    result = subprocess.run([sys.executable, "-m", "pyresqueworker.cli.demo", "--redis", redis_url],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Ruby enqueued 1 job" in result.stdout
    assert "[high] Greeter: Hola, from Ruby!" in result.stdout


def test_readme_links_work_on_pypi() -> None:
    """PyPI shows the README without the repository around it: every link must be absolute."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = LINK.findall(text)
    assert targets
    relative = [target for target in targets if not target.startswith(("https://", "http://"))]
    assert not relative, relative


def test_the_version_says_beta_and_titles_are_built_from_it() -> None:
    assert re.fullmatch(r"0\.9\.\d+", __version__)
    # Ruby's same-host prune greps for resque-[0-9]: the process title ("resque-X.Y.Z: ...")
    # must carry __version__, so no code or test may spell out a version of its own.
    stale = [str(path.relative_to(ROOT))
             for under in ("pyresqueworker", "tests") for path in (ROOT / under).rglob("*.py")
             if re.search(r"resque-\d+\.\d+\.\d+: ", path.read_text(encoding="utf-8"))]
    assert not stale, stale


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def supported_pythons() -> list[str]:
    """The Python versions setup.cfg's classifiers promise: 3.9 to 3.13."""
    classifiers = setup_cfg()["metadata"]["classifiers"].splitlines()
    return [found.group(1) for line in classifiers
            if (found := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", line))]


def requirements_on(extra: str, python: str) -> dict[str, SpecifierSet]:
    """What ``pip install '.[extra]'`` asks for on ``python``, by name, specifiers combined."""
    lines = setup_cfg()["options.extras_require"][extra].splitlines()
    env = {"python_version": python, "python_full_version": f"{python}.0", "extra": extra}
    asked: dict[str, SpecifierSet] = {}
    for requirement in (Requirement(line) for line in lines if line.strip()):
        if requirement.marker is None or requirement.marker.evaluate(env):
            name = canonicalize_name(requirement.name)
            asked[name] = asked.get(name, SpecifierSet()) & requirement.specifier
    return asked


def test_every_requirement_of_the_test_extra_with_an_extra_is_accounted_for() -> None:
    lines = setup_cfg()["options.extras_require"]["test"].splitlines()
    with_extras = {canonicalize_name(Requirement(line).name) for line in lines
                   if line.strip() and Requirement(line).extras}
    assert with_extras <= set(ASKED_WITH_AN_EXTRA), with_extras - set(ASKED_WITH_AN_EXTRA)
    # A Python added to the classifiers needs the [test] extra measured on it (getting-started).
    assert supported_pythons() == ["3.9", "3.10", "3.11", "3.12", "3.13"]


@pytest.mark.parametrize("python", supported_pythons())
def test_the_test_extra_resolves_without_backtracking_on(python: str) -> None:
    """On each Python a package's newest releases dropped, the [test] extra caps it at the last
    release that installs there, so that pip before 23.3 resolves the extra in seconds (Python
    3.9's took more than 15 minutes); nothing else has an upper bound, so every Python gets the
    newest releases it can install."""
    asked = requirements_on("test", python)
    for name, (newest, dropped) in ASKED_WITH_AN_EXTRA.items():
        specifier = asked.get(name, SpecifierSet())
        if python in dropped:
            last, first_without = dropped[python]
            assert last in specifier and first_without not in specifier, (name, str(specifier))
        else:
            assert newest in specifier, (name, str(specifier))
    capped = {name for name, specifier in asked.items()
              if any(spec.operator in UPPER_BOUNDS for spec in specifier)}
    expected = {name for name, (_, dropped) in ASKED_WITH_AN_EXTRA.items() if python in dropped}
    assert capped == expected, f"capped on {python}: {sorted(capped)}, not {sorted(expected)}"
