"""Strict checks of what admins type: ids, hostnames, service URLs and whole manual rules.

These are the API's own small validators, deliberately not shared with the agent's label parser: labels are
lenient (DockFlare compatibility, per-label error reports), an admin API can be strict and say exactly which
field is wrong. Each check raises ``ApiError`` 422 naming the field; nothing here touches Redis.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from flareport_api.errors import ApiError, invalid
from flareport_common.messages.rules import Rule

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HTTP_STATUS = re.compile(r"^http_status:[1-5][0-9][0-9]$")
_NO_SPACE = re.compile(r"^\S+$")
_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|ms|s|m|h))+$")

# Schemes cloudflared accepts for an ingress service, and whether they need an explicit port.
_URL_SCHEMES = {"http": False, "https": False, "ws": False, "wss": False, "tcp": True, "ssh": True, "rdp": True}
_BARE_SERVICES = {"hello_world", "bastion"}


def path_id(value: str, what: str) -> str:
    """An id taken from the URL path (agent, key, rule, group); 404-style ids never reach Redis key names."""
    if not _ID.match(value):
        raise ApiError(
            422, "invalid_id", f"{what} must be 1-64 characters of letters, digits, '_', '.', '-'", field=what
        )
    return value


def entry_id(value: str, what: str) -> str:
    """A stream entry id ``<ms>-<seq>``."""
    if not _ENTRY_ID.match(value):
        raise ApiError(422, "invalid_id", f"{what} must be a stream entry id like 1700000000000-0", field=what)
    return value


def hostname(value: str, field: str, *, wildcard: bool = True) -> str:
    """A fully qualified DNS name (at least two labels, LDH rules, <= 253 chars); ``*.`` only as first label."""
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253:
        raise invalid(field, "hostname must be 1-253 characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise invalid(field, f"hostname {value!r} must be fully qualified (e.g. app.example.com)")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and wildcard:
            continue
        if not _LABEL.match(label):
            raise invalid(
                field,
                f"hostname {value!r}: label {label!r} must be 1-63 letters, digits or inner '-'",
            )
    if labels[-1].isdigit():
        raise invalid(field, f"hostname {value!r} must not end with a numeric label")
    return name


def _origin_host(host: str, field: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not all(_LABEL.match(label) for label in host.lower().split(".")):
        raise invalid(field, f"service host {host!r} is not a valid host name or IP address")


def service_url(value: str, field: str) -> str:
    """An ingress service: scheme://host[:port] (tcp/ssh/rdp need the port), unix:/path, http_status:NNN, ..."""
    if value in _BARE_SERVICES or _HTTP_STATUS.match(value):
        return value
    if value.startswith(("unix:", "unix+tls:")):
        path = value.split(":", 1)[1]
        if not path.startswith("/") or not _NO_SPACE.match(path):
            raise invalid(field, f"service {value!r}: unix socket needs an absolute path without spaces")
        return value
    parts = urlsplit(value)
    if parts.scheme not in _URL_SCHEMES:
        raise invalid(
            field,
            f"service {value!r}: expected http(s)://, ws(s)://, tcp://, ssh://, rdp://, unix:, http_status:NNN, "
            "hello_world or bastion",
        )
    if parts.username is not None or parts.password is not None:
        raise invalid(field, f"service {value!r} must not contain credentials")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise invalid(field, f"service {value!r} must be scheme://host[:port] with no path, query or fragment")
    if not parts.hostname:
        raise invalid(field, f"service {value!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise invalid(field, f"service {value!r} has an invalid port") from None
    if port == 0:
        raise invalid(field, f"service {value!r} has an invalid port")
    if _URL_SCHEMES[parts.scheme] and port is None:
        raise invalid(field, f"service {value!r}: {parts.scheme}:// needs an explicit port")
    _origin_host(parts.hostname, field)
    return value


def rule(value: Rule, field: str = "rule") -> Rule:
    """A manual rule with every field checked; returns it with the hostname normalised to lower case."""
    host = hostname(value.hostname, f"{field}.hostname")
    service_url(value.service, f"{field}.service")
    if value.path is not None and (not value.path or len(value.path) > 512 or not _NO_SPACE.match(value.path)):
        raise invalid(f"{field}.path", "path must be 1-512 characters without whitespace")
    zone = value.zone_name
    if zone is not None:
        zone = hostname(zone, f"{field}.zone_name", wildcard=False)
        if host != zone and not host.endswith("." + zone):
            raise invalid(f"{field}.zone_name", f"hostname {host!r} is not inside zone {zone!r}")
    origin = value.origin
    if origin.origin_server_name is not None:
        hostname(origin.origin_server_name, f"{field}.origin.origin_server_name", wildcard=False)
    if origin.http_host_header is not None and not _NO_SPACE.match(origin.http_host_header):
        raise invalid(f"{field}.origin.http_host_header", "host header must be non-empty without whitespace")
    if value.access is not None:
        if value.access.session_duration is not None:
            duration(value.access.session_duration, f"{field}.access.session_duration")
        for index, group in enumerate(value.access.groups):
            if not _ID.match(group):
                raise invalid(f"{field}.access.groups[{index}]", f"group id {group!r} is not a valid id")
    if host == value.hostname and zone == value.zone_name:
        return value
    return Rule(
        hostname=host,
        service=value.service,
        path=value.path,
        zone_name=zone,
        origin=value.origin,
        access=value.access,
        adopt=value.adopt,
    )


def names(values: tuple[str, ...], field: str, *, suffix: bool = False) -> tuple[str, ...]:
    """Zone names or hostname suffixes (for an agent's allow-list), normalised."""
    out = []
    for index, value in enumerate(values):
        text = value[1:] if suffix and value.startswith(".") else value
        out.append(hostname(text, f"{field}[{index}]", wildcard=False))
    return tuple(out)


def text(value: str, field: str, *, maximum: int = 200) -> str:
    stripped = value.strip()
    if not stripped or len(stripped) > maximum or any(ch in stripped for ch in "\r\n\t\x00"):
        raise invalid(field, f"{field} must be 1-{maximum} characters on one line")
    return stripped


def duration(value: str, field: str) -> str:
    """A Go-style duration as Cloudflare Access takes it (``24h``, ``30m``, ``1h30m``)."""
    if len(value) > 32 or not _DURATION.match(value):
        raise invalid(field, f"duration {value!r} must look like 24h, 30m or 1h30m")
    return value
