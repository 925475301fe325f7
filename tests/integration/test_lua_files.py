"""Every Lua file of every package, loaded as its service loads it and compiled by a real redis-server.

A syntax error in a script would otherwise surface only when its code path first runs; here it fails the suite.
Files are found in the tree (not through a list), so a new script is checked the moment it is added.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from flareport_common import lua

ROOT = Path(__file__).parents[2]
_USES = re.compile(r"^--\s*uses:\s*(?P<names>.+)$", re.MULTILINE)


@dataclass(frozen=True)
class LuaFile:
    package: str
    folder: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


def _lua_files() -> list[LuaFile]:
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = []
    for top, directory in package_dirs.items():
        base = ROOT / directory
        for path in sorted(base.rglob("*.lua")):
            package = ".".join((top, *path.parent.parent.relative_to(base).parts))
            found.append(LuaFile(package, path.parent.name, path))
    return found


FILES = _lua_files()
IDS = [str(f.path.relative_to(ROOT)) for f in FILES]


def test_the_services_have_lua_files() -> None:
    packages = {f.package for f in FILES}
    assert {"flareport_common", "flareport_api", "flareport_dns_worker", "flareport_reconciler"} <= packages, (
        f"found only {packages}"
    )


@pytest.mark.parametrize("file", FILES, ids=IDS)
async def test_each_script_compiles_with_its_fragments(file: LuaFile, redis: aioredis.Redis) -> None:
    script = lua.load(file.package, file.name, folder=file.folder)
    try:
        sha = await redis.script_load(script.source)
    except Exception as exc:
        pytest.fail(f"{file.path.relative_to(ROOT)} does not compile: {exc}")
    assert await redis.script_exists(sha) == [True]


@pytest.mark.parametrize("file", FILES, ids=IDS)
def test_each_script_names_its_arguments_in_its_header(file: LuaFile) -> None:
    """A fragment (named in another file's ``uses:``) has no arguments of its own; every other file is a script
    whose header names its KEYS and ARGV, the contract its Python wrapper follows."""
    folder = file.path.parent
    used = {
        name.strip()
        for other in folder.glob("*.lua")
        for match in _USES.finditer(other.read_text())
        for name in match.group("names").split(",")
    }
    if file.name in used:
        return
    text = file.path.read_text()
    missing = [header for header in ("-- KEYS:", "-- ARGV:") if not re.search(rf"^{header}", text, re.MULTILINE)]
    assert not missing, f"{file.path.relative_to(ROOT)} is a script without {' and '.join(missing)} in its header"
