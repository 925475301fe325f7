"""docs/configuration.md is the settings' reference: checked here against what the loaders actually read.

Each service's loader runs on a small environment while every typed read of ``Env`` is recorded (the variable,
its aliases and the default it falls back to); the socket guard's options, which default to variables, are
recorded as its parser declares them. Then, per program, against the tables of its sections of
docs/configuration.md: every variable read is documented with the same aliases and the same default, and every
variable documented is read. The admin CLI and local-stack tables are not checked here.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flareport_agent import sockguard_server
from flareport_common import settings
from flareport_common.env import Env

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"

REQUIRED = "required"  # the recorded default of a variable that must be set
# Sections of docs/configuration.md and the services whose loader they describe.
SECTIONS = {
    "Shared by the control-plane services (api, reconciler, dns-worker)": ("api", "reconciler", "dns-worker"),
    "api": ("api",),
    "reconciler": ("reconciler",),
    "dns-worker": ("dns-worker",),
    "agent": ("agent",),
    "socket guard (`flareport socket-guard`)": ("socket-guard",),
}
# Defaults computed from the environment when the variable is unset; the docs describe how instead of a value.
COMPUTED = {"FLAREPORT_ADMIN_PASSWORD_FILE"}

_API_KEY = "k" * 32
# Variables read only under a condition are read in a second environment that meets it.
LOADERS: dict[str, tuple[Callable[[Mapping[str, str]], object], list[dict[str, str]]]] = {
    "api": (
        settings.load_api,
        [
            {"MASTER_API_KEY": _API_KEY},
            {
                "MASTER_API_KEY": _API_KEY,
                "FLAREPORT_UI_SESSION_MAX_HOURS": "48",
                "FLAREPORT_OIDC_ISSUER": "https://login.example.com",
                "FLAREPORT_OIDC_CLIENT_ID": "flareport",
                "FLAREPORT_OIDC_CLIENT_SECRET": "secret",
                "FLAREPORT_OIDC_ALLOWED_EMAILS": "admin@example.com",
                "FLAREPORT_OIDC_REDIRECT_URL": "https://flareport.example.com/ui/login/oidc/callback",
            },
        ],
    ),
    "reconciler": (settings.load_reconciler, [{}]),
    "dns-worker": (settings.load_dns_worker, [{"CLOUDFLARE_API_TOKEN": "t", "CLOUDFLARE_ACCOUNT_ID": "a"}]),
    "agent": (settings.load_agent, [{"FLAREPORT_MASTER_URL": "http://127.0.0.1:8080", "FLAREPORT_API_KEY": "k"}]),
    "socket-guard": (settings.load_logging, [{}]),
}
# Programs whose command-line options default to variables: the parser is built while they are recorded.
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {"socket-guard": sockguard_server.build_parser}


@dataclass
class Read:
    aliases: set[tuple[str, ...]] = field(default_factory=set)
    defaults: list[Any] = field(default_factory=list)

    def default(self) -> Any:
        """The default a read falls back to; a presence check (``optional``) before a read with a default, or
        before a read that requires it, makes the variable neither required nor defaultless."""
        values = [d for d in self.defaults if d is not None and d is not REQUIRED]
        if values:
            assert all(v == values[0] for v in values), f"read with different defaults: {values}"
            return values[0]
        return None if None in self.defaults else REQUIRED


def _recorded(monkeypatch: pytest.MonkeyPatch, service: str) -> dict[str, Read]:
    reads: dict[str, Read] = {}
    depth = [0]

    def record(method: str, required: Callable[[dict[str, Any]], bool]) -> None:
        original = getattr(Env, method)

        def wrapper(self: Env, *names: str, **kwargs: Any) -> Any:
            if depth[0] == 0:  # url() reads through text(), optional_int() through integer(): only the outer call
                read = reads.setdefault(names[0], Read())
                read.aliases.add(names[1:])
                read.defaults.append(REQUIRED if required(kwargs) else kwargs.get("default"))
            depth[0] += 1
            try:
                return original(self, *names, **kwargs)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(Env, method, wrapper)

    def never(kwargs: dict[str, Any]) -> bool:
        return False

    def unless_default(kwargs: dict[str, Any]) -> bool:
        return bool(kwargs.get("required")) or kwargs.get("default") is None

    for method in ("integer", "number", "flag", "choice", "optional", "optional_int"):
        record(method, never)
    for method in ("text", "url"):
        record(method, unless_default)
    loader, environments = LOADERS[service]
    for environ in environments:
        loader(environ)
        if service in PARSERS:
            _record_parser(PARSERS[service], environ, reads)
    return reads


class _Recording(Mapping[str, str]):
    """An environment that notes every variable the program looks up (``get`` goes through ``__getitem__``);
    argparse's own lookups (locale, terminal size) happen while ``muted``."""

    def __init__(self, values: Mapping[str, str], seen: list[str]) -> None:
        self._values = dict(values)
        self._seen = seen
        self.muted = 0

    def __getitem__(self, key: str) -> str:
        if not self.muted:
            self._seen.append(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _record_parser(
    build: Callable[[], argparse.ArgumentParser], environ: Mapping[str, str], reads: dict[str, Read]
) -> None:
    """Options declared as ``default=os.environ.get(NAME) or ...``: each variable looked up while an option is
    declared falls back to that option's default."""
    seen: list[str] = []
    recording = _Recording(environ, seen)
    original = argparse.ArgumentParser.add_argument
    original_init = argparse.ArgumentParser.__init__

    def init(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        recording.muted += 1
        try:
            original_init(parser, *args, **kwargs)
        finally:
            recording.muted -= 1

    def add_argument(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> argparse.Action:
        recording.muted += 1
        try:
            action = original(parser, *args, **kwargs)
        finally:
            recording.muted -= 1
        for name in seen:
            read = reads.setdefault(name, Read())
            read.aliases.add(())
            read.defaults.append(action.default)
        seen.clear()
        return action

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", recording)
        patch.setattr(argparse.ArgumentParser, "__init__", init)
        patch.setattr(argparse.ArgumentParser, "add_argument", add_argument)
        build()


@dataclass(frozen=True)
class Row:
    name: str
    aliases: tuple[str, ...]
    default: str
    line: int


def _documented() -> dict[str, list[Row]]:
    """Per service, the rows of its sections: ``| `NAME` [`ALIAS`] | default | meaning |``."""
    rows: dict[str, list[Row]] = {service: [] for service in LOADERS}
    section = ""
    for number, line in enumerate(DOC.read_text().splitlines(), start=1):
        if line.startswith("## "):
            section = line[3:].strip()
        match = re.match(r"^\| (?P<names>`[^|]+?) \| (?P<default>[^|]*?) \|", line)
        if match is None or section not in SECTIONS:
            continue
        aliases = tuple(re.findall(r"`([A-Z0-9_]+)`", "".join(re.findall(r"\[[^\]]*\]", match["names"]))))
        names = [n for n in re.findall(r"`([A-Z0-9_]+)`", re.sub(r"\[[^\]]*\]", "", match["names"]))]
        for service in SECTIONS[section]:
            rows[service] += [Row(name, aliases, match["default"].strip(), number) for name in names]
    return rows


def _resolved(row: Row, everywhere: Iterator[Row]) -> str:
    """``as above`` / ``as for the api``: the default documented for the same variable where it has one."""
    if not row.default.startswith("as "):
        return row.default
    for other in everywhere:
        if other.name == row.name and not other.default.startswith("as "):
            return other.default
    return row.default


def _agrees(documented: str, default: Any) -> bool:
    """Whether a documented default states the code's. A value must be one of the cell's literals, which must
    start it (a default that depends on another setting lists each case: "`1` with `REDIS_SENTINELS`, else `0`")."""
    if default is REQUIRED:
        return documented.startswith("required")
    starts_literal = documented.startswith("`")
    if default is None:  # unset, empty, none, required with another setting, the SDK's default...
        return not starts_literal and documented != "required"
    return starts_literal and any(_same(literal, default) for literal in re.findall(r"`([^`]*)`", documented))


def _same(literal: str, default: Any) -> bool:
    if isinstance(default, bool):
        return literal == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(literal) == default
        except ValueError:
            return False
    return bool(literal == default)


@pytest.mark.parametrize("service", sorted(LOADERS))
def test_every_variable_read_is_documented_with_its_default_and_every_documented_one_is_read(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _recorded(monkeypatch, service)
    documented = _documented()
    rows = {row.name: row for row in documented[service]}
    everywhere = [row for service_rows in documented.values() for row in service_rows]
    assert {"REDIS_URL", "LOG_LEVEL"} & set(reads), "the recording saw no read at all"

    undocumented = sorted(set(reads) - set(rows))
    assert not undocumented, f"the {service} reads these variables, its tables in {DOC.name} lack them: {undocumented}"
    unread = sorted(f"{name} (line {row.line})" for name, row in rows.items() if name not in reads)
    assert not unread, f"{DOC.name} documents these for the {service}, which never reads them: {unread}"
    problems = []
    for name, read in sorted(reads.items()):
        row = rows[name]
        if read.aliases != {row.aliases}:
            problems.append(f"{name}: aliases {sorted(read.aliases)} in the code, {row.aliases} at line {row.line}")
        if name in COMPUTED:
            continue
        default = read.default()
        documented_default = _resolved(row, iter(everywhere))
        if not _agrees(documented_default, default):
            shown = "required" if default is REQUIRED else repr(default)
            problems.append(f"{name}: default {shown} in the code, {documented_default!r} at line {row.line}")
    assert not problems, f"docs/configuration.md disagrees with the {service}'s settings:\n" + "\n".join(problems)


def test_a_wrong_default_in_the_docs_would_be_caught() -> None:
    assert _agrees("`600`", 600) and _agrees("`2.0`", 2) and _agrees("`true`", True) and _agrees("`fp:`", "fp:")
    assert not _agrees("`60`", 600) and not _agrees("`false`", True) and not _agrees("unset", 600)
    assert _agrees("unset (URL's db)", None) and not _agrees("`0`", None) and not _agrees("required", None)
    assert _agrees("required with OIDC", REQUIRED) and not _agrees("unset", REQUIRED)
    assert _agrees("`1` with `REDIS_SENTINELS`, else `0`", 0) and not _agrees("`1` with `REDIS_SENTINELS`", 0)
