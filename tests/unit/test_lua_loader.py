"""The Lua loader: scripts as files with their shared fragments, each fragment once, clear errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flareport_common import lua


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "luapkg_under_test"
    (root / "lua").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        yield root / "lua"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("luapkg_under_test", None)


def test_a_script_gets_its_fragments_in_front_each_once(package: Path) -> None:
    (package / "main.lua").write_text("-- KEYS: k\n-- uses: left, right\nreturn helper()\n")
    (package / "left.lua").write_text("-- uses: shared\nlocal function left() end\n")
    (package / "right.lua").write_text("-- uses: shared\nlocal function right() end\n")
    (package / "shared.lua").write_text("local function helper() return 1 end\n")

    source = lua.load("luapkg_under_test", "main").source

    assert source.count("local function helper()") == 1
    assert source.index("helper()") < source.index("left()") < source.index("right()") < source.index("return helper")


def test_missing_fragments_and_loops_are_named(package: Path) -> None:
    (package / "a.lua").write_text("-- uses: b\n")
    (package / "b.lua").write_text("-- uses: a\n")
    (package / "c.lua").write_text("-- uses: nowhere\n")

    with pytest.raises(lua.LuaError, match="a -> b -> a"):
        lua.load("luapkg_under_test", "a")
    with pytest.raises(lua.LuaError, match=r"lua/nowhere\.lua not found"):
        lua.load("luapkg_under_test", "c")


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, tuple[object, ...]]] = []

    def eval(self, script: str, numkeys: int, *keys_and_args: object) -> object:
        self.calls.append((script, numkeys, keys_and_args))
        return "queued"


def test_eval_passes_the_key_count_then_keys_then_arguments() -> None:
    script = lua.LuaScript("s", "return 1")
    recorder = _Recorder()

    assert script.eval(recorder, ["k1", "k2"], [3, "x"]) == "queued"
    assert recorder.calls == [("return 1", 2, ("k1", "k2", 3, "x"))]
