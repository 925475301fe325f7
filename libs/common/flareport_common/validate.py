"""Strict checks of a published rule, shared by the API (admin manual rules and every agent-sent rule) and the
agent's label parser, so the agent can never build a rule the API would refuse.

Each check raises ``FieldError`` naming the exact field (``events[3].container.rules[0].hostname``) and a reason
a user can act on; nothing here does I/O. Everything is bounded: a rule that passes has a known maximum size, so
one agent cannot make the control plane store or forward unbounded data through a single rule.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

import msgspec

from flareport_common.goregex import go_regex_error
from flareport_common.messages.rules import AccessSpec, OriginOptions, Rule

# Bounds of what one rule may carry (docs/security.md, "Threats from a stolen agent key").
MAX_HOSTNAME = 253
MAX_PATH = 1024
MAX_SERVICE = 1024
MAX_HOST_HEADER = 260  # a host name and a port
MAX_ACCESS_NAME = 200
MAX_GROUPS = 50
MAX_IDPS = 50
MAX_CUSTOM_RULES = 50
MAX_CUSTOM_RULES_BYTES = 8192  # the JSON of all custom rules of one rule
MAX_CUSTOM_RULE_DEPTH = 6  # [{"include": [{"email": {"email": "a@b"}}]}] is 5; {"saml": {...}} stays within 6

# Cloudflare Access rule types (the ``access_rule`` oneOf of Cloudflare's API schema): a custom rule is an object
# with exactly one of these keys and an object as its value. Anything else is refused rather than forwarded.
ACCESS_RULE_TYPES = frozenset(
    {
        "any_valid_service_token",
        "auth_context",
        "auth_method",
        "azureAD",
        "certificate",
        "common_name",
        "device_posture",
        "email",
        "email_domain",
        "email_list",
        "everyone",
        "external_evaluation",
        "geo",
        "github-organization",
        "group",
        "gsuite",
        "ip",
        "ip_list",
        "linked_app_token",
        "login_method",
        "oidc",
        "okta",
        "saml",
        "service_token",
        "user_risk_score",
    }
)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_STREAM_ID = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})\Z")
MAX_STREAM_PART = 2**64 - 1  # both halves of a Redis stream entry id are unsigned 64-bit integers
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# A valid lower-case name in one match (the usual case); anything else takes the label-by-label path and its reason.
_PLAIN_NAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]*[a-z-][a-z0-9-]*\Z")
# Origin hosts are often container names, which may contain '_' (``http://my_app:8080``).
_ORIGIN_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
# The common service form, checked in one match (urlsplit and ipaddress cost ten times more): scheme, a lower-case
# host of origin labels (an IPv4 address matches too, and is valid either way), an optional port and "/".
_PLAIN_URL = re.compile(
    r"^(https?|wss?|tcp|ssh|rdp)://([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*)"
    r"(?::([1-9][0-9]{0,4}))?/?\Z"
)
_HTTP_STATUS = re.compile(r"^http_status:[1-5][0-9][0-9]\Z")
_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+\Z")

# Schemes cloudflared accepts for an ingress service, and whether they need an explicit port.
_URL_SCHEMES = {"http": False, "https": False, "ws": False, "wss": False, "tcp": True, "ssh": True, "rdp": True}
_BARE_SERVICES = {"hello_world", "bastion"}


class FieldError(ValueError):
    """One field is wrong: ``field`` is its dotted path, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _printable(value: str) -> bool:
    """No control characters (newlines, NUL, escapes): they would forge log lines or break configurations."""
    return value.isprintable()


def ident(value: str, field: str, what: str = "id") -> str:
    """An identifier (group, IdP, tunnel): 1-64 letters, digits, '_', '.', '-'."""
    if not _ID.match(value):
        raise FieldError(field, f"{what} {value[:80]!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
    return value


def stream_id(value: str, field: str) -> str:
    """A Redis stream entry id ``<ms>-<seq>``, each half within 64 bits (Redis refuses anything else with an error,
    so an id that passes is safe to hand to XRANGE, XPENDING or XDEL)."""
    found = _STREAM_ID.match(value)
    if found is None or int(found[1]) > MAX_STREAM_PART or int(found[2]) > MAX_STREAM_PART:
        raise FieldError(field, f"{field} must be a stream entry id like 1700000000000-0 (two 64-bit numbers)")
    return value


def hostname(value: str, field: str, *, wildcard: bool = True) -> str:
    """A fully qualified DNS name (at least two labels, LDH rules, <= 253 chars); ``*.`` only as first label."""
    if len(value) <= MAX_HOSTNAME and _PLAIN_NAME.match(value) and _LABEL.match(value.rsplit(".", 1)[1]):
        return value
    name = value.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_HOSTNAME:
        raise FieldError(field, f"hostname must be 1-{MAX_HOSTNAME} characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise FieldError(field, f"hostname {value!r} must be fully qualified (e.g. app.example.com)")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and wildcard:
            continue
        if not _LABEL.match(label):
            raise FieldError(field, f"hostname {value!r}: label {label!r} must be 1-63 letters, digits or inner '-'")
    if labels[-1].isdigit():
        raise FieldError(field, f"hostname {value!r} must not end with a numeric label")
    return name


def _origin_host(host: str, field: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if len(host) > MAX_HOSTNAME or not all(_ORIGIN_LABEL.match(label) for label in host.lower().split(".")):
        raise FieldError(field, f"service host {host!r} is not a valid host name or IP address")


def service(value: str, field: str) -> str:
    """An ingress service: scheme://host[:port] (tcp/ssh/rdp need the port), unix:/path, http_status:NNN, ..."""
    if len(value) > MAX_SERVICE or not _printable(value):
        raise FieldError(field, f"service must be at most {MAX_SERVICE} printable characters")
    if value in _BARE_SERVICES or _HTTP_STATUS.match(value):
        return value
    plain = _PLAIN_URL.match(value)
    if plain is not None and len(plain[2]) <= MAX_HOSTNAME and int(plain[3] or 1) <= 65535:
        if _URL_SCHEMES[plain[1]] and plain[3] is None:
            raise FieldError(field, f"service {value!r}: {plain[1]}:// needs an explicit port")
        return value
    if value.startswith(("unix:", "unix+tls:")):
        path = value.split(":", 1)[1]
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise FieldError(field, f"service {value!r}: unix socket needs an absolute path without spaces")
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        raise FieldError(field, f"service {value!r} is not a valid URL") from None
    if parts.scheme not in _URL_SCHEMES:
        raise FieldError(
            field,
            f"service {value!r}: expected http(s)://, ws(s)://, tcp://, ssh://, rdp://, unix:, http_status:NNN, "
            "hello_world or bastion",
        )
    if parts.username is not None or parts.password is not None:
        raise FieldError(field, f"service {value!r} must not contain credentials")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise FieldError(field, f"service {value!r} must be scheme://host[:port] with no path, query or fragment")
    if not parts.hostname:
        raise FieldError(field, f"service {value!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise FieldError(field, f"service {value!r} has an invalid port") from None
    if port == 0:
        raise FieldError(field, f"service {value!r} has an invalid port")
    if _URL_SCHEMES[parts.scheme] and port is None:
        raise FieldError(field, f"service {value!r}: {parts.scheme}:// needs an explicit port")
    _origin_host(parts.hostname, field)
    return value


def path(value: str, field: str) -> str:
    """A path match (cloudflared takes a regular expression in Go's RE2 syntax): 1-1024 characters, no whitespace or
    controls, and a pattern Go's ``regexp`` compiles."""
    if not value or len(value) > MAX_PATH or not _printable(value) or any(c.isspace() for c in value):
        raise FieldError(field, f"path must be 1-{MAX_PATH} characters without whitespace")
    reason = go_regex_error(value)
    if reason is not None:
        # cloudflared compiles the path with Go's regexp: one it refuses would sink the tunnel's whole configuration.
        raise FieldError(field, f"path {value!r} is not a regular expression cloudflared accepts (RE2): {reason}")
    return value


def inside(name: str, zone: str) -> bool:
    """Whether ``name`` is ``zone`` itself or a name under it (``*.x`` counts as under ``x``); case and a trailing
    dot do not matter. The one test of zone membership for the API, the reconciler and the dns-worker."""
    host, base = name.strip(".").lower().removeprefix("*."), zone.strip(".").lower()
    return bool(base) and (host == base or host.endswith("." + base))


def zone(value: str, host: str, field: str) -> str:
    """The zone a hostname is published in: a name that contains the hostname (its apex or a parent)."""
    name = hostname(value, field, wildcard=False)
    if not inside(host, name):
        raise FieldError(field, f"hostname {host!r} is not inside zone {name!r}")
    return name


def duration(value: str, field: str) -> str:
    """A Go-style duration as Cloudflare Access takes it (``24h``, ``30m``, ``1h30m``)."""
    if len(value) > 32 or not _DURATION.match(value):
        raise FieldError(field, f"duration {value!r} must look like 24h, 30m or 1h30m")
    return value


def text(value: str, field: str, *, maximum: int = 200) -> str:
    """A one-line text (names, labels): stripped, 1-``maximum`` printable characters."""
    stripped = value.strip()
    if not stripped or len(stripped) > maximum or not _printable(stripped):
        raise FieldError(field, f"{field} must be 1-{maximum} characters on one line")
    return stripped


def origin(value: OriginOptions, field: str) -> None:
    if value.origin_server_name is not None:
        hostname(value.origin_server_name, f"{field}.origin_server_name", wildcard=False)
    header = value.http_host_header
    if header is not None and (
        not header or len(header) > MAX_HOST_HEADER or not _printable(header) or any(c.isspace() for c in header)
    ):
        raise FieldError(
            f"{field}.http_host_header", f"host header must be 1-{MAX_HOST_HEADER} characters without whitespace"
        )


def _shape(value: Any, field: str) -> None:
    """Depth and size of JSON-like data, walked without recursion (hostile nesting must not blow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    items = 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if depth > MAX_CUSTOM_RULE_DEPTH:
            raise FieldError(field, f"custom rules nest deeper than {MAX_CUSTOM_RULE_DEPTH} levels")
        if items > MAX_CUSTOM_RULES_BYTES:
            break  # the size check below refuses it
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((child, depth + 1) for child in node)


def _access_rules(rules: Any, where: str, *, required: bool) -> None:
    """A list of Cloudflare Access rule objects, each with exactly one known rule type and an object value."""
    if not isinstance(rules, list | tuple) or (required and not rules):
        raise FieldError(where, "must be a non-empty list of Access rules" if required else "must be a list")
    for index, item in enumerate(rules):
        at = f"{where}[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise FieldError(at, 'an Access rule is an object with exactly one rule type, e.g. {"email": {...}}')
        kind, body = next(iter(item.items()))
        if kind not in ACCESS_RULE_TYPES:
            raise FieldError(at, f"unknown Access rule type {str(kind)[:64]!r}")
        if not isinstance(body, dict):
            raise FieldError(f"{at}.{kind}", "an Access rule's value must be an object")


_POLICY_KEYS = frozenset({"name", "decision", "include", "exclude", "require"})
_DECISIONS = ("allow", "deny", "bypass", "non_identity")


def custom_rules(rules: tuple[dict[str, Any], ...], field: str) -> None:
    """``access.custom_rules``, as in DockFlare: a list of whole Access policies (``decision``, ``include``, optional
    ``exclude``, ``require`` and ``name``), bounded in number, size and depth, every rule of a known type."""
    if len(rules) > MAX_CUSTOM_RULES:
        raise FieldError(field, f"at most {MAX_CUSTOM_RULES} custom policies")
    _shape(rules, field)
    try:
        size = len(msgspec.json.encode(rules))
    except (TypeError, OverflowError, msgspec.EncodeError):
        raise FieldError(field, "custom rules must be plain JSON") from None
    if size > MAX_CUSTOM_RULES_BYTES:
        raise FieldError(field, f"custom rules must be at most {MAX_CUSTOM_RULES_BYTES} bytes of JSON")
    for index, item in enumerate(rules):
        where = f"{field}[{index}]"
        unknown = sorted(str(k)[:32] for k in item if k not in _POLICY_KEYS)
        if unknown:
            raise FieldError(
                where,
                f"a custom rule is a whole Access policy ({{decision, include, exclude?, require?, name?}}); "
                f"unknown key(s) {', '.join(unknown)}",
            )
        if item.get("decision") not in _DECISIONS:
            raise FieldError(f"{where}.decision", f"decision must be one of {', '.join(_DECISIONS)}")
        if item.get("name") is not None:
            text(str(item["name"]), f"{where}.name", maximum=MAX_ACCESS_NAME)
        _access_rules(item.get("include"), f"{where}.include", required=True)
        for optional in ("exclude", "require"):
            if item.get(optional) is not None:
                _access_rules(item[optional], f"{where}.{optional}", required=False)


def access(value: AccessSpec, field: str) -> None:
    if value.name is not None:
        text(value.name, f"{field}.name", maximum=MAX_ACCESS_NAME)
    if value.session_duration is not None:
        duration(value.session_duration, f"{field}.session_duration")
    if len(value.groups) > MAX_GROUPS:
        raise FieldError(f"{field}.groups", f"at most {MAX_GROUPS} groups")
    for index, group in enumerate(value.groups):
        ident(group, f"{field}.groups[{index}]", "group id")
    if len(value.allowed_idps) > MAX_IDPS:
        raise FieldError(f"{field}.allowed_idps", f"at most {MAX_IDPS} identity providers")
    for index, idp in enumerate(value.allowed_idps):
        ident(idp, f"{field}.allowed_idps[{index}]", "identity provider id")
    custom_rules(value.custom_rules, f"{field}.custom_rules")


def rule(value: Rule, field: str = "rule") -> Rule:
    """A rule with every field checked and bounded; returns it with host and zone names in lower case.

    ``adopt`` is not judged here: an admin may set it, an agent may not (the API's agent input checks say so).
    """
    host = hostname(value.hostname, f"{field}.hostname")
    service(value.service, f"{field}.service")
    if value.path is not None:
        path(value.path, f"{field}.path")
    zone_name = value.zone_name
    if zone_name is not None:
        zone_name = zone(zone_name, host, f"{field}.zone_name")
    origin(value.origin, f"{field}.origin")
    if value.access is not None:
        access(value.access, f"{field}.access")
    if host == value.hostname and zone_name == value.zone_name:
        return value
    return msgspec.structs.replace(value, hostname=host, zone_name=zone_name)


TRUNCATED = " …[truncated]"


def _clip(value: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, cut on a character boundary."""
    return value.encode()[: max(limit, 0)].decode(errors="ignore")


def clip_label_error(label: str, reason: str, limit: int) -> tuple[str, str]:
    """A label error's label and reason cut to ``limit`` bytes together, marked when cut (the label keeps at most
    half, so the reason stays readable). Truncated rather than refused: an honest agent's long error (a
    pasted JSON blob in a label) still reports which label is wrong, and the stored size stays bounded."""
    size = len(label.encode()) + len(reason.encode())
    if size <= limit:
        return label, reason
    marker = len(TRUNCATED.encode())
    if len(label.encode()) > limit // 2:
        label = _clip(label, limit // 2 - marker) + TRUNCATED
    room = limit - len(label.encode())
    if len(reason.encode()) > room:
        reason = _clip(reason, room - marker) + TRUNCATED
    return label, reason
