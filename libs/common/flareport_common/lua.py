"""Lua scripts kept as ``.lua`` files next to the module that owns them, loaded once at import.

Why files: a script in a Python string has no syntax highlighting, no line numbers in Redis's error messages that
match anything, and invites arguments addressed by arithmetic. Each script file starts with a header that names
its arguments, which is also the contract its one typed Python wrapper follows::

    -- KEYS: dirty        the dirty-hostnames sorted set
    -- ARGV: now_ms, hostname...
    -- uses: bump_version

``uses:`` lists shared fragments (files of the same folder defining ``local function``s) that are put in front
of the script, in the order given. The wrapper is the only code that knows the KEYS/ARGV order.

Scripts are sent with EVAL, not EVALSHA: they run inside pipelines and MULTI, where a script missing from the
server's cache would fail alone after the other commands were applied. Redis caches the compiled script by its
hash either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

_USES = re.compile(r"^--\s*uses:\s*(?P<names>.+)$", re.MULTILINE)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Evaluator(Protocol):
    """What runs a script: a client (awaitable reply) or a pipeline (queued); redis-py's ``eval`` for both."""

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any: ...


class LuaError(Exception):
    """A script file is missing, names a fragment that does not exist, or includes itself in a loop."""


@dataclass(frozen=True)
class LuaScript:
    """One script: its name (the file's stem) and its full source, fragments included."""

    name: str
    source: str

    def eval(self, target: Evaluator, keys: list[str], args: list[Any]) -> Any:
        """Run on a client (returns an awaitable) or queue on a pipeline (returns the pipeline)."""
        return target.eval(self.source, len(keys), *keys, *args)


def load(package: str, name: str, folder: str = "lua") -> LuaScript:
    """Read ``<package>/<folder>/<name>.lua`` with the fragments its ``uses:`` header names (each once)."""
    parts: list[str] = []
    _assemble(package, folder, name, (), parts, set())
    return LuaScript(name, "\n".join(parts))


def _assemble(package: str, folder: str, name: str, seen: tuple[str, ...], parts: list[str], done: set[str]) -> None:
    if not _NAME.match(name):
        raise LuaError(f"{package}/{folder}: invalid script name {name!r}")
    if name in seen:
        raise LuaError(f"{package}/{folder}: fragments include each other: {' -> '.join((*seen, name))}")
    if name in done:
        return
    try:
        text = resources.files(package).joinpath(folder, f"{name}.lua").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LuaError(f"{package}/{folder}/{name}.lua not found") from None
    for match in _USES.finditer(text):
        for used in (n.strip() for n in match.group("names").split(",")):
            if used:
                _assemble(package, folder, used, (*seen, name), parts, done)
    done.add(name)
    parts.append(text)
