"""Nothing in the package reads or overrides a private name of redis-py or of the standard
library (issue 25): such names change in any release, silently. The claim path owns its
socket (protocol._claim_link), and the connections that follow Redis override public methods.

The source is read as syntax trees, and the classes as Python builds them:

* ``x._name`` and ``getattr(x, "_name")`` (``hasattr``, ``setattr``, ``delattr`` too) where
  ``x`` is a module or object imported from redis or the standard library;
* the same on any other object (a local, ``self.something``, a call's result) when
  ``_name`` is a private name of redis-py, or of a standard-library module the file imports
  (names their classes define or set on ``self``), unless the object is known to be one of
  the package's own (a local made by one of its classes, cast or annotated as one);
* ``from redis._parsers import ...`` and other imports of a private module or name;
* in a class with a redis-py or standard-library class among its bases (mixins of such a
  class included): a method or ``self._name`` / ``super()._name`` / ``cls._name`` that is
  one of those classes' private names (a read, or an override).

Names the libraries document as public are allowed (``os._exit``, the named-tuple methods,
enum's ``_name_``-style names, the ``_thread`` module).
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import pkgutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Optional

import pytest

import pyresqueworker

if sys.version_info < (3, 10):  # (sys.stdlib_module_names)
    pytest.skip("needs Python 3.10", allow_module_level=True)

PACKAGE = Path(pyresqueworker.__file__).resolve().parent
FOREIGN_ROOTS = frozenset({"redis", "builtins", *sys.stdlib_module_names})

# Underscore names the libraries document as public API.
DOCUMENTED = frozenset({"_exit", "_replace", "_asdict", "_make", "_fields", "_field_defaults",
                        "_thread"})

# Uses known and left to their owners, with why (each must still be found: a fixed one is
# struck off here, so the list cannot outlive what it excuses).
KNOWN: dict[tuple[str, str], str] = {}

_LOOKUPS = frozenset({"getattr", "hasattr", "setattr", "delattr"})


def is_private(name: str) -> bool:
    """``_name``, not a dunder (``__init__``) nor an enum-style sunder (``_value_``)."""
    if not name.startswith("_") or name.startswith("__") or name in DOCUMENTED:
        return False
    return not (len(name) > 2 and name.endswith("_"))


def is_foreign(module: str) -> bool:
    return module.split(".", 1)[0] in FOREIGN_ROOTS


@functools.cache
def names_in(path: str) -> frozenset[str]:
    """The private names a foreign module's source defines or sets: methods and class
    attributes, and ``self._x`` / ``cls._x`` attributes."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and is_private(node.name):
            found.add(node.name)
        elif (isinstance(node, ast.Attribute) and is_private(node.attr)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    found.update(t.id for t in targets
                                 if isinstance(t, ast.Name) and is_private(t.id))
    return frozenset(found)


@functools.cache
def module_names(module: ModuleType) -> frozenset[str]:
    """The private names of a foreign module, or of a package and its submodules."""
    path = getattr(module, "__file__", None)
    if path is None:
        return frozenset()
    if Path(path).name != "__init__.py":
        return names_in(path)
    names: set[str] = set()
    for file in Path(path).parent.rglob("*.py"):
        names |= names_in(str(file))
    return frozenset(names)


@functools.cache
def class_names(cls: type) -> frozenset[str]:
    """A foreign class's private names (its own attributes, and those its source sets)."""
    names = {name for name in vars(cls) if is_private(name)}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return frozenset(names)
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and is_private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)
    return frozenset(names)


def package_modules() -> Iterator[tuple[str, Path]]:
    for info in pkgutil.walk_packages([str(PACKAGE)], "pyresqueworker."):
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            yield info.name, Path(spec.origin)


def imports_of(tree: ast.Module, module: str) -> dict[str, str]:
    """Local name -> the dotted name it was imported as."""
    bound: dict[str, str] = {}
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    root = alias.name.split(".", 1)[0]
                    bound[root] = root
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    return bound


def dotted(node: ast.expr) -> Optional[list[str]]:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def is_self(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "super")


class Scan(ast.NodeVisitor):
    """The findings in one module of the package."""

    def __init__(self, relative: str, module: str, tree: ast.Module) -> None:
        self.relative = relative
        self.bound = imports_of(tree, module)
        self.foreign_names: set[str] = set(module_names(importlib.import_module("redis")))
        for origin in self.bound.values():
            root = origin.split(".", 1)[0]
            if root in FOREIGN_ROOTS and root != "builtins" and root in sys.modules:
                self.foreign_names |= module_names(sys.modules[root])
        try:
            self.live: Optional[ModuleType] = importlib.import_module(module)
        except ImportError:  # an optional dependency (Django) is missing: no class checks
            self.live = None
        self.inherited: list[frozenset[str]] = []  # per enclosing class
        self.own_locals: list[set[str]] = []  # per enclosing function: locals of our types
        self.classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        self.found: list[tuple[str, str]] = []

    def own_type(self, node: Optional[ast.expr]) -> bool:
        """Whether a type expression names one of the package's classes."""
        if isinstance(node, ast.Subscript):
            return self.own_type(node.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node = ast.parse(node.value, mode="eval").body
        if isinstance(node, ast.Name) and node.id in self.classes:
            return True
        origin = self.origin(node) if node is not None else None
        return origin is not None and origin.startswith("pyresqueworker")

    def own_value(self, node: ast.expr) -> bool:
        """Whether an assigned value is one of ours: ``Ours(...)`` or ``cast(Ours, ...)``."""
        if not isinstance(node, ast.Call):
            return False
        if isinstance(node.func, ast.Name) and node.func.id == "cast" and node.args:
            return self.own_type(node.args[0])
        return self.own_type(node.func)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        own = {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
               if self.own_type(a.annotation)}
        for item in ast.walk(node):
            if isinstance(item, ast.Assign) and self.own_value(item.value):
                own.update(t.id for t in item.targets if isinstance(t, ast.Name))
            elif (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                  and self.own_type(item.annotation)):
                own.add(item.target.id)
        self.own_locals.append(own)
        self.generic_visit(node)
        self.own_locals.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def note(self, node: ast.AST, what: str, key: str) -> None:
        self.found.append((f"{self.relative}:{getattr(node, 'lineno', 0)}: {what}", key))

    def origin(self, receiver: ast.expr) -> Optional[str]:
        parts = dotted(receiver)
        if parts is None or parts[0] not in self.bound:
            return None
        return ".".join([self.bound[parts[0]], *parts[1:]])

    def access(self, node: ast.AST, receiver: ast.expr, name: str) -> None:
        if not is_private(name):
            return
        if is_self(receiver):
            if self.inherited and name in self.inherited[-1]:
                self.note(node, f"{ast.unparse(receiver)}.{name}: a private name of a "
                                "redis-py or standard-library base class", name)
            return
        origin = self.origin(receiver)
        if origin is not None:
            if is_foreign(origin):
                self.note(node, f"{origin}.{name}: a private name of {origin.split('.')[0]}",
                          f"{origin}.{name}")
            return  # (one of ours, or a third party's other than redis-py's)
        if isinstance(receiver, ast.Name) and (
                receiver.id in vars(builtins)
                or (self.own_locals and receiver.id in self.own_locals[-1])):
            return
        if self.own_value(receiver):
            return
        if name in self.foreign_names:
            self.note(node, f"{ast.unparse(receiver)}.{name}: a private name of redis-py or "
                            "of a standard-library module this file imports", name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.access(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id in _LOOKUPS and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            self.access(node, node.args[0], node.args[1].value)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if not node.level and is_foreign(module):
            private = [p for p in module.split(".") if is_private(p)]
            private += [a.name for a in node.names if is_private(a.name)]
            for name in private:
                self.note(node, f"imports {name} from {module}", f"{module}.{name}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if is_foreign(alias.name) and any(is_private(p) for p in alias.name.split(".")):
                self.note(node, f"imports {alias.name}", alias.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        names = self.foreign_bases(node.name)
        for item in node.body:
            if (isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and item.name in names):
                self.note(item, f"{node.name}.{item.name} overrides a private method of a "
                                "redis-py or standard-library base class", item.name)
        self.inherited.append(names)
        self.generic_visit(node)
        self.inherited.pop()

    def foreign_bases(self, class_name: str) -> frozenset[str]:
        """The private names of the foreign classes this class is, or is mixed into."""
        if self.live is None:
            return frozenset()
        ours = getattr(self.live, class_name, None)
        if not isinstance(ours, type):
            return frozenset()
        names: set[str] = set()
        for cls in self.classes_using(ours):
            for base in cls.__mro__:
                if base is not object and is_foreign(base.__module__):
                    names |= class_names(base)
        return frozenset(names)

    @staticmethod
    def classes_using(ours: type) -> list[type]:
        """``ours`` and the package's classes that have it as a base (it may be a mixin)."""
        users = [ours]
        for module in list(sys.modules.values()):
            if not getattr(module, "__name__", "").startswith("pyresqueworker"):
                continue
            for value in list(vars(module).values()):
                # (type(), not isinstance: a lazy object, Django's settings, would load)
                if issubclass(type(value), type) and value is not ours and ours in value.__mro__:
                    users.append(value)
        return users


def findings() -> list[tuple[str, str]]:
    """Every finding in the package: (where and what, a key for :data:`KNOWN`)."""
    for name, _ in package_modules():  # (all imported first: mixins meet their users)
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    found: list[tuple[str, str]] = []
    for name, path in package_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scan = Scan(path.relative_to(PACKAGE).as_posix(), name, tree)
        scan.visit(tree)
        found += scan.found
    return found


def test_the_package_uses_no_private_name_of_redis_py_or_the_standard_library() -> None:
    found = findings()
    excused = {(where.split(":", 1)[0], key) for where, key in found} & KNOWN.keys()
    unexcused = [where for where, key in found if (where.split(":", 1)[0], key) not in KNOWN]
    assert not unexcused, "private names of redis-py or the standard library:\n" + "\n".join(
        unexcused)
    assert excused == KNOWN.keys(), f"no longer found, strike off KNOWN: {KNOWN.keys() - excused}"


def test_the_scan_finds_each_kind_of_use() -> None:
    source = textwrap.dedent('''
        import json, socket
        import redis
        from redis.connection import Connection
        from redis._parsers import Encoder

        class Mine(Connection):
            def _connect(self):
                return self._sock

        def f(conn, sock):
            json.encoder._make_iterencode
            getattr(conn, "_reader", None)
            conn._sock
            redis.Redis()._lock
            return sock._closed
        ''')
    tree = ast.parse(source)
    scan = Scan("example.py", "pyresqueworker.example", tree)
    scan.live = ModuleType("pyresqueworker.example")
    exec(compile(tree, "example.py", "exec"), vars(scan.live))
    scan.visit(tree)
    lines = sorted(int(where.split(":")[1]) for where, _ in scan.found)
    assert lines == [5, 8, 9, 12, 13, 14, 15, 16], scan.found


def test_our_own_names_and_public_ones_pass() -> None:
    source = textwrap.dedent('''
        import os
        from collections import namedtuple
        from . import sibling

        class Plain:
            def __init__(self):
                self._mine = 1

            def _helper(self, other):
                return other._mine + sibling._private_helper()

        def g(point):
            os._exit(0)
            return point._replace(x=1)

        def h(made: Plain):
            other = Plain()
            made._client = other._sock = cast(Plain, object())._lock = None
        ''')
    tree = ast.parse(source)
    scan = Scan("example.py", "pyresqueworker.protocol.example", tree)
    scan.live = None
    scan.visit(tree)
    assert scan.found == []


if __name__ == "__main__":  # pragma: no cover - lists the findings
    for where, _ in findings():
        print(where)
