"""Strict checks of what admins type, and of every rule an agent sends: ids, hostnames, service URLs, rules.

The rule checks themselves live in ``flareport_common.validate``, shared with the agent's label parser so an
agent never builds a rule the API refuses; this module turns their ``FieldError`` into ``ApiError`` 422 naming
the field. Nothing here touches Redis.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flareport_api.apierror import ApiError, invalid
from flareport_common import validate

P = ParamSpec("P")
T = TypeVar("T")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def _as_api_error(check: Callable[P, T]) -> Callable[P, T]:
    """The shared check, answering 422 naming the field instead of raising ``FieldError``."""

    def checked(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return check(*args, **kwargs)
        except validate.FieldError as exc:
            raise invalid(exc.field, exc.reason) from None

    checked.__doc__ = check.__doc__
    return checked


hostname = _as_api_error(validate.hostname)
service_url = _as_api_error(validate.service)
duration = _as_api_error(validate.duration)
text = _as_api_error(validate.text)
rule = _as_api_error(validate.rule)
path = _as_api_error(validate.path)
origin = _as_api_error(validate.origin)
access = _as_api_error(validate.access)


def path_id(value: str, what: str) -> str:
    """An id taken from the URL path (agent, key, rule, group); 404-style ids never reach Redis key names."""
    if not _ID.match(value):
        raise ApiError(
            422, "invalid_id", f"{what} must be 1-64 characters of letters, digits, '_', '.', '-'", field=what
        )
    return value


def entry_id(value: str, what: str) -> str:
    """A stream entry id ``<ms>-<seq>`` (each half a 64-bit number: Redis answers anything else with an error)."""
    try:
        return validate.stream_id(value, what)
    except validate.FieldError as exc:
        raise ApiError(422, "invalid_id", exc.reason, field=what) from None


def names(values: tuple[str, ...], field: str, *, suffix: bool = False) -> tuple[str, ...]:
    """Zone names or hostname suffixes (for an agent's allow-list), normalised."""
    out = []
    for index, value in enumerate(values):
        item = value[1:] if suffix and value.startswith(".") else value
        out.append(hostname(item, f"{field}[{index}]", wildcard=False))
    return tuple(out)
