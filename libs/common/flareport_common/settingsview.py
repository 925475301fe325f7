"""A service's effective settings as an admin may see them: every field, with the secrets masked.

Pure: it walks the frozen settings dataclasses (``flareport_common.settings``) and reads nothing else. A field is
a secret exactly when its dataclass field is declared ``repr=False`` (the master key, passwords and their hashes,
the OIDC client secret, the agent-key secret, the Redis URL that may carry a password), so a new secret is masked
here as soon as it is kept out of reprs and logs. Every URL is shown with its password replaced (any URL may carry
one), so an admin can still see which Redis or master a process talks to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "set (hidden)"
NOT_SET = "not set"
MASK = "***"


def _url(value: str) -> str | None:
    """``value`` with its password masked if it is a URL, else None."""
    parts = urlsplit(value)
    if not (parts.scheme and parts.netloc):
        return None
    if parts.password is None:
        return value
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{parts.netloc.rsplit('@', 1)[1]}"))


def _masked(name: str, value: Any) -> str:
    if value is None or value == "":
        return NOT_SET
    if name.endswith("_url") and isinstance(value, str):
        return _url(value) or HIDDEN
    return HIDDEN


def _shown(value: Any) -> str:
    if value is None:
        return NOT_SET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset | set):
        return ", ".join(sorted(str(v) for v in value)) or "(none)"
    if isinstance(value, tuple | list):
        # Pairs (a Sentinel's host and port) read as host:port.
        return ", ".join(":".join(map(str, v)) if isinstance(v, tuple) else _shown(v) for v in value) or "(none)"
    return str(value)


def rows(settings: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted name, value as shown)`` for every field of ``settings`` and the settings nested in it."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        name = prefix + field.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from rows(value, name + ".")
        elif not field.repr:
            yield name, _masked(field.name, value)
        elif field.name.endswith("_url") and isinstance(value, str):
            yield name, _url(value) or value  # any URL may carry a password, not only the ones marked secret
        else:
            yield name, _shown(value)
