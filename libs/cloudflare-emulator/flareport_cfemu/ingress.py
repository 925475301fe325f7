"""Validation of a remotely-managed tunnel configuration, the way cloudflared does it.

Cloudflare stores whatever passes these checks and cloudflared refuses whatever fails them, so
a configuration the emulator accepts must be one a real connector can run.  The rules follow
cloudflared's ``ingress`` package:

* the last rule must be a catch-all: no ``hostname`` (or ``*``) and no ``path``;
* no catch-all before the last rule (it would shadow every rule after it);
* a hostname may contain one ``*`` only as a whole leading label (``*.example.com``) and no port;
* ``path`` must be a regular expression Go's ``regexp`` compiles (RE2 syntax, checked with Google's RE2: no
  lookarounds, backreferences, possessive quantifiers, ``\\Z`` or ``\\C``; ``\\pL``, ``\\z``, ``(?<name>…)`` are fine);
* ``service`` is ``http_status:NNN`` (100-599), ``hello_world``, ``hello-world``, ``bastion``,
  ``socks5``, a ``unix:`` / ``unix+tls:`` socket path, or a URL with scheme http, https, tcp,
  ssh, rdp, smb, ws or wss and a host; an http(s)/ws(s) URL may not carry a path, because
  cloudflared proxies to the eyeball's path.
Every failure is a 400 with a message naming the rule, like cloudflared's own errors.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import re2

from flareport_cfemu import errors
from flareport_cfemu.errors import ApiError, bad_request

Json = dict[str, Any]
URL_SCHEMES = frozenset({"http", "https", "tcp", "ssh", "rdp", "smb", "ws", "wss"})
PATHLESS_SCHEMES = frozenset({"http", "https", "ws", "wss"})
KEYWORD_SERVICES = frozenset({"hello_world", "hello-world", "bastion", "socks5"})
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the C++ library would print every refused pattern to stderr


def _fail(index: int, message: str) -> ApiError:
    return bad_request(errors.TUNNEL_CONFIG_INVALID, f"Validation failed: ingress rule #{index + 1}: {message}")


def is_catch_all(rule: Json) -> bool:
    return rule.get("hostname") in (None, "", "*") and not rule.get("path")


def _check_hostname(index: int, hostname: Any) -> None:
    if hostname in (None, "", "*"):
        return
    if not isinstance(hostname, str):
        raise _fail(index, "hostname must be a string")
    if ":" in hostname:
        raise _fail(index, f"hostname {hostname!r} cannot contain a port")
    if hostname.count("*") > 1 or ("*" in hostname and not hostname.startswith("*.")):
        raise _fail(
            index,
            f'hostname {hostname!r}: hostname patterns can have at most one wildcard character ("*") '
            'and it can only be used for subdomains, e.g. "*.example.com"',
        )


def _any_byte_escape(pattern: str) -> bool:
    escaped = False
    for char in pattern:
        if escaped:
            if char == "C":
                return True
            escaped = False
        elif char == "\\":
            escaped = True
    return False


def go_regex_error(pattern: str) -> str | None:
    """None when Go's ``regexp.Compile`` (RE2 syntax) accepts ``pattern``, else the reason. Google's RE2 decides;
    Go is stricter than the C++ library in one place, ``\\C`` (any byte), which Go refuses."""
    if _any_byte_escape(pattern):
        return "invalid escape sequence: \\C"
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return None


def _check_service(index: int, service: Any) -> None:
    if not isinstance(service, str) or not service:
        raise _fail(index, "service is required")
    if service in KEYWORD_SERVICES:
        return
    if service.startswith("http_status:"):
        code = service.removeprefix("http_status:")
        if not code.isdigit() or not 100 <= int(code) <= 599:
            raise _fail(index, f"{service!r}: invalid HTTP status code, must be between 100 and 599")
        return
    if service.startswith(("unix:", "unix+tls:")):
        if not service.split(":", 1)[1]:
            raise _fail(index, f"{service!r}: unix socket path is missing")
        return
    parts = urlsplit(service)
    if parts.scheme not in URL_SCHEMES:
        raise _fail(index, f"{service!r} is an invalid service: unsupported scheme {parts.scheme!r}")
    if not parts.hostname:
        raise _fail(index, f"{service!r} doesn't have a hostname, consider adding one")
    if parts.scheme in PATHLESS_SCHEMES and parts.path not in ("", "/"):
        raise _fail(
            index,
            f"{service} is an invalid address, ingress rules don't support proxying to a different path on the "
            "origin service. The path will be the same as the eyeball request's path",
        )


def validate_config(config: Any) -> Json:
    """Return ``config`` unchanged if cloudflared would run it, else raise a 400."""
    if not isinstance(config, dict):
        raise bad_request(errors.TUNNEL_CONFIG_INVALID, "Validation failed: config must be an object")
    ingress = config.get("ingress")
    if ingress is None:
        return config
    if not isinstance(ingress, list) or not all(isinstance(rule, dict) for rule in ingress):
        raise bad_request(errors.TUNNEL_CONFIG_INVALID, "Validation failed: ingress must be a list of rules")
    last = len(ingress) - 1
    for index, rule in enumerate(ingress):
        _check_hostname(index, rule.get("hostname"))
        path = rule.get("path")
        if path:
            reason = go_regex_error(str(path))
            if reason is not None:
                # cloudflared's own wording (ingress.validate), wrapping Go's regexp error.
                raise _fail(index, f"Rule #{index + 1} has an invalid regex: error parsing regexp: {reason}")
        _check_service(index, rule.get("service"))
        if index < last and is_catch_all(rule):
            raise _fail(
                index,
                f"rule #{index + 1} matches every hostname, meaning the rules which follow it will never be "
                "triggered; move it to the end",
            )
    if ingress and not is_catch_all(ingress[last]):
        raise _fail(last, "the last ingress rule must match all URLs (i.e. it should not have a hostname or path)")
    return config
