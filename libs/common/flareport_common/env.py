"""Typed reads of environment variables, each failing with one line that names the variable.

A variable may have aliases (DockFlare's names); the first one set wins, Flareport's own name first.
An empty value counts as unset, which is what compose files with ``VAR=${VAR:-}`` produce.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from flareport_common.errors import SettingsError

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


class Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, *names: str) -> tuple[str, str] | None:
        """The first set variable among ``names`` and its value, or None."""
        for name in names:
            value = self._environ.get(name, "").strip()
            if value:
                return name, value
        return None

    def text(self, *names: str, default: str | None = None, required: bool = False) -> str:
        found = self.raw(*names)
        if found is None:
            if required or default is None:
                raise SettingsError(f"{_label(names)}: required but not set")
            return default
        return found[1]

    def optional(self, *names: str) -> str | None:
        found = self.raw(*names)
        return None if found is None else found[1]

    def integer(self, *names: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        found = self.raw(*names)
        if found is None:
            return default
        name, value = found
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise SettingsError(f"{name}: must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise SettingsError(f"{name}: must be at most {maximum}, got {number}")
        return number

    def optional_int(self, *names: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
        if self.raw(*names) is None:
            return None
        return self.integer(*names, default=0, minimum=minimum, maximum=maximum)

    def number(self, *names: str, default: float, minimum: float | None = None) -> float:
        found = self.raw(*names)
        if found is None:
            return default
        name, value = found
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise SettingsError(f"{name}: must be at least {minimum}, got {number}")
        return number

    def flag(self, *names: str, default: bool) -> bool:
        found = self.raw(*names)
        if found is None:
            return default
        name, value = found
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(f"{name}: expected true/false, got {value!r}")

    def choice(self, *names: str, default: str, choices: tuple[str, ...]) -> str:
        found = self.raw(*names)
        if found is None:
            return default
        name, value = found
        lowered = value.lower()
        if lowered not in choices:
            raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return lowered

    def url(self, *names: str, schemes: tuple[str, ...], default: str | None = None, required: bool = False) -> str:
        value = self.text(*names, default=default, required=required)
        name = (self.raw(*names) or (names[0], value))[0]
        parts = urlsplit(value)
        # The error is printed and may be collected: never with the URL's password.
        shown = (
            parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl() if "@" in parts.netloc else value
        )
        if parts.scheme not in schemes:
            raise SettingsError(f"{name}: expected a {'/'.join(schemes)} URL, got {shown!r}")
        if parts.scheme not in ("unix", "redis+unix") and not parts.hostname:
            raise SettingsError(f"{name}: URL has no host: {shown!r}")
        return value


_IMAGE_RE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@sha256:(?P<digest>[a-f0-9]{64}))?$"
)


def validate_image(name: str, value: str) -> str:
    """An image reference ``repo:tag`` or ``repo@sha256:<64 hex>`` (what CLOUDFLARED_IMAGE accepts)."""
    match = _IMAGE_RE.match(value)
    if match is None or (match["tag"] is None and match["digest"] is None):
        raise SettingsError(f"{name}: expected repo:tag or repo@sha256:<64 hex digest>, got {value!r}")
    return value


def _label(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} (or {', '.join(names[1:])})"
