"""Validators for single label values: hostnames, origin service URLs, booleans, durations.

Each validator returns the normalised value or raises ``ValueError`` with a reason a user can act on; the label
parser (``labels.py``) turns that into a ``RuleError`` naming the label. Nothing here knows about prefixes.
"""

from __future__ import annotations

import ipaddress
import re

TRUE_VALUES = frozenset({"true", "1", "t", "yes"})  # DockFlare's set
FALSE_VALUES = frozenset({"false", "0", "f", "no"})

_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+\Z")
_SERVICE_FORMS = (
    ", ".join(("http(s)://host[:port]", "tcp|ssh|rdp://host:port", "unix:/path", "unix+tls:/path", "http_status:NNN"))
    + ", hello_world or bastion"
)


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in FALSE_VALUES:
        return False
    raise ValueError(f"expected true/false (true, 1, t, yes / false, 0, f, no), got {value!r}")


def parse_hostname(value: str, *, wildcard: bool = True) -> str:
    """A DNS name of RFC 1123 labels (at least two), optionally starting with a single ``*.``; lower-cased."""
    name = value.strip().lower().rstrip(".")
    if not name:
        raise ValueError("is empty")
    if "://" in name:
        raise ValueError(f"must be a bare hostname, not a URL: {value!r}")
    if "/" in name:
        host, _, path = name.partition("/")
        raise ValueError(f"contains a path ({'/' + path!r}); put it in the path label and keep hostname {host!r}")
    if not name.isascii():
        raise ValueError(f"must be ASCII (use the punycode xn-- form): {value!r}")
    if len(name) > 253:
        raise ValueError(f"is longer than 253 characters ({len(name)})")
    labels = name.split(".")
    if labels[0] == "*":
        if not wildcard:
            raise ValueError(f"must not be a wildcard: {value!r}")
        labels = labels[1:]
    if len(labels) < 2:
        raise ValueError(f"needs at least two labels (e.g. app.example.com): {value!r}")
    if labels[-1].isdigit():
        raise ValueError(f"has an all-numeric top-level label (an IP address is not a hostname): {value!r}")
    for label in labels:
        if not _HOST_LABEL.match(label):
            raise ValueError(
                f"label {label!r} is invalid (1-63 of a-z, 0-9, '-', not starting or ending with '-'"
                + (", and '*' only as the whole first label" if "*" in label else "")
                + ")"
            )
    return name


def _parse_host(host: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"unterminated IPv6 address {host!r}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"invalid IPv6 address {host!r}") from None
        return host
    if not host:
        raise ValueError("has no host")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"invalid IPv4 address {host!r}") from None
        return host
    # Container names and single-label hosts are normal origins (``http://web:8080``).
    for label in host.lower().split("."):
        if not re.fullmatch(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", label):
            raise ValueError(f"invalid host {host!r}")
    return host


def _split_host_port(rest: str, *, port_required: bool) -> tuple[str, int | None]:
    if rest.startswith("["):
        end = rest.find("]")
        host, tail = (rest[: end + 1], rest[end + 1 :]) if end >= 0 else (rest, "")
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            host, tail = rest, ""
        else:
            tail = ":" + port_text
    host = _parse_host(host)
    if not tail:
        if port_required:
            raise ValueError("needs a port (host:port)")
        return host, None
    if not tail.startswith(":") or not tail[1:].isdigit() or not tail[1:].isascii():
        raise ValueError(f"invalid port {tail[1:]!r}")
    port = int(tail[1:])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return host, port


def parse_service(value: str) -> str:
    """An origin cloudflared can route to (see ``_SERVICE_FORMS``); returned in canonical form."""
    text = value.strip()
    lowered = text.lower()
    if lowered in ("hello_world", "bastion"):
        return lowered
    if lowered.startswith("http_status:"):
        code = text.split(":", 1)[1]
        if not (code.isascii() and code.isdigit() and 100 <= int(code) <= 599):
            raise ValueError(f"http_status needs a status code 100-599, got {code!r}")
        return f"http_status:{int(code)}"
    for scheme in ("unix+tls:", "unix:"):
        if lowered.startswith(scheme):
            path = text[len(scheme) :]
            if not path.startswith("/") or any(c.isspace() for c in path):
                raise ValueError(f"{scheme} needs an absolute socket path, got {text!r}")
            return scheme + path
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https", "tcp", "ssh", "rdp"):
        raise ValueError(f"unsupported service {text!r}; expected {_SERVICE_FORMS}")
    if any(c.isspace() for c in rest) or "@" in rest or "?" in rest or "#" in rest:
        raise ValueError(f"service URL must be scheme://host[:port] only, got {text!r}")
    authority, slash, path = rest.partition("/")
    if slash and path:
        raise ValueError(
            f"service URL must not contain a path ('/{path}'); cloudflared forwards the request path as is — "
            "use the path label to match a path"
        )
    host, port = _split_host_port(authority, port_required=scheme in ("tcp", "ssh", "rdp"))
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def parse_duration(value: str) -> str:
    """A Go duration as Cloudflare Access takes it (``24h``, ``30m``, ``1h30m``)."""
    text = value.strip()
    if not _DURATION.match(text):
        raise ValueError(f"expected a duration such as 24h, 30m or 1h30m, got {value!r}")
    return text


def parse_list(value: str) -> tuple[str, ...]:
    """A comma-separated list; blanks between commas are dropped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_seconds(value: str, *, maximum: int = 366 * 86400) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"expected a whole number of seconds, got {value!r}")
    seconds = int(text)
    if seconds > maximum:
        raise ValueError(f"must be at most {maximum} seconds, got {seconds}")
    return seconds
