"""No module of the project uses a private (underscore) name of another of its modules.

A leading underscore says "only this module relies on it": a route module's helper the web UI imported anyway was
how the UI came to depend on the routes' insides. What two modules share gets a public name in a module both may
import (the API's admin use cases, ``flareport_common``). This walks the syntax tree of every module under
``libs/`` and ``services/`` and finds, for the project's packages (``flareport_*``):

* ``from flareport_x.y import _name`` (or a relative ``from .y import _name``), and a private module imported
  the same ways (``from flareport_x import _mod``, ``import flareport_x._mod``);
* ``module._name`` where ``module`` is a project module the file imported.

Dunder names (``__version__``) are not private.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
PROJECT = "flareport_"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> tuple[str, bool]:
    """The dotted module name of a source file (from its first ``flareport_*`` folder), and whether it is a
    package's ``__init__``."""
    parts = path.with_suffix("").parts
    start = next(i for i, part in enumerate(parts) if part.startswith(PROJECT))
    names = list(parts[start:])
    package = names[-1] == "__init__"
    if package:
        names.pop()
    return ".".join(names), package


def _absolute(module: str | None, level: int, current: str, package: bool) -> str:
    """The module a (possibly relative) ``from ... import`` names, as an absolute dotted name."""
    if level == 0:
        return module or ""
    base = current.split(".")
    base = base if package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def private_uses(source: str, module: str, *, package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, what) for every private name of another project module that ``source`` (the module ``module``)
    uses."""
    tree = ast.parse(source)
    aliases: set[str] = set()  # local names bound to project modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            origin = _absolute(node.module, node.level, module, package)
            if not origin.startswith(PROJECT):
                continue
            if any(_private(part) for part in origin.split(".")):
                yield node.lineno, f"from {origin} import ..."
            for alias in node.names:
                if _private(alias.name):
                    yield node.lineno, f"from {origin} import {alias.name}"
                aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith(PROJECT):
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    yield node.lineno, f"import {alias.name}"
                aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            yield node.lineno, f"{node.value.id}.{node.attr}"


def _sources() -> Iterator[Path]:
    for top in ("libs", "services"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if any(part.startswith(PROJECT) for part in path.relative_to(ROOT).parts):
                yield path


def test_no_module_uses_a_private_name_of_another() -> None:
    found = []
    for path in _sources():
        module, package = _module_name(path)
        for line, what in private_uses(path.read_text(encoding="utf-8"), module, package=package):
            found.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not found, "private names used outside their module (give them a public name in a shared module):\n" + (
        "\n".join(found)
    )


def test_the_check_finds_each_way_of_reaching_a_private_name() -> None:
    source = "\n".join(
        [
            "from flareport_api.admin_agents import STATUSES, _agent",  # 1: the UI's old import
            "from flareport_api import admin_ops",
            "from . import _helpers",  # 3: a private module, relative
            "from .guards import render, _flash",  # 4
            "import flareport_common._internal",  # 5
            "from ..keystore import hash_key",
            "from redis._parsers import Encoder",  # another project's private: not ours to judge
            "from flareport_common import __version__",  # a dunder is public
            "x = admin_ops._letter(1, 2)",  # 9: through the module
            "def _mine(): return _mine",
        ]
    )
    found = sorted(private_uses(source, "flareport_api.ui.actions"))
    assert found == [
        (1, "from flareport_api.admin_agents import _agent"),
        (3, "from flareport_api.ui import _helpers"),
        (4, "from flareport_api.ui.guards import _flash"),
        (5, "import flareport_common._internal"),
        (9, "admin_ops._letter"),
    ], found


def test_relative_imports_resolve_from_a_package_and_from_a_module() -> None:
    assert _absolute("guards", 1, "flareport_api.ui", package=True) == "flareport_api.ui.guards"
    assert _absolute("guards", 1, "flareport_api.ui.actions", package=False) == "flareport_api.ui.guards"
    assert _absolute("keystore", 2, "flareport_api.ui.actions", package=False) == "flareport_api.keystore"
    assert _absolute(None, 1, "flareport_api.ui.actions", package=False) == "flareport_api.ui"
