"""A non-editable install (the images) ships every package and the UI's files: setuptools lists are explicit."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_python_package_in_the_tree_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top, directory in config["package-dir"].items():
        base = ROOT / directory
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            found.add(".".join((top, *relative.parts)))
    assert found == listed, f"unlisted: {sorted(found - listed)}; listed but missing: {sorted(listed - found)}"


def test_ui_templates_and_static_files_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["flareport_api.ui"]
    ui = ROOT / "services/api/flareport_api/ui"
    files = [p.relative_to(ui) for p in ui.rglob("*") if p.is_file() and p.suffix in {".html", ".js", ".css"}]
    assert files, "the UI has templates and static files"
    assert all(any(f.match(pattern) for pattern in patterns) for f in files)


def test_lua_scripts_are_package_data() -> None:
    """The loader reads ``<package>/lua/<name>.lua`` from the installed package: a file the wheel leaves out is a
    service that fails at import."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    patterns = config["package-data"]["*"]
    scripts = []
    for top, directory in config["package-dir"].items():
        base = ROOT / directory
        for path in base.rglob("*.lua"):
            relative = path.relative_to(base)
            package = ".".join((top, *relative.parent.parent.parts))
            scripts.append(path)
            assert package in listed, f"{path.relative_to(ROOT)}: its package {package} is not listed"
            assert any(Path(relative.parent.name, path.name).match(p) for p in patterns), f"{relative} not shipped"
    assert scripts, "the services have Lua scripts"
