"""DockFlare's documented Access label sets and the edge cases derived from its code (docs/dev/dockflare-access-spec.md,
rows D* and E*), each with the Access outcome Flareport must produce: DockFlare's, or a stricter one with an error
where DockFlare's behaviour is an accident. Shared by the pure conformance test and the end-to-end one.

An outcome per rule (keyed by hostname + path):

* ``("groups", (ids...))``: an app linking the reusable policies of these groups, in order;
* ``("inline", (decisions...))``: an app with these app-scoped policies;
* ``("none",)``: published, no app of ours;
* ``("error", "text")``: nothing published for the hostname, the rule shows an error containing ``text``;
* ``("label", "text")``: the label does not parse: the rule is not sent at all (a label error names it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUPS: dict[str, dict[str, Any]] = {
    "admin-users": {"decision": "allow", "include": [{"email": {"email": "admin@example.com"}}]},
    "home-network": {"decision": "bypass", "include": [{"ip": {"ip": "192.0.2.0/24"}}]},
    "public-eu": {"decision": "bypass", "include": [{"everyone": {}}], "exclude": [{"geo": {"country_code": "RU"}}]},
    "team": {"decision": "allow", "include": [{"email_domain": {"domain": "example.com"}}], "session_duration": "8h"},
    "api-access-policy": {"decision": "allow", "include": [{"any_valid_service_token": {}}]},
    "staff": {"decision": "allow", "include": [{"email_domain": {"domain": "staff.example.com"}}]},
    "admins": {"decision": "allow", "include": [{"email": {"email": "root@example.com"}}]},
    "a": {"decision": "allow", "include": [{"email": {"email": "a@example.com"}}]},
    "b": {"decision": "allow", "include": [{"email": {"email": "b@example.com"}}]},
}
OWNER = "owner@example.com"
CUSTOM = '[{"name": "corp", "decision": "allow", "include": [{"email_domain": {"domain": "corp.example.com"}}]}]'
PUBLIC = ("groups", ("public-default-bypass",))


@dataclass(frozen=True)
class Row:
    row: str  # the spec's row id
    labels: dict[str, str]  # without the prefix, enable, hostname and service (added per test)
    expected: dict[str, tuple[Any, ...]]  # "" = the base rule; "0", "1"... = indexed rules


DEFAULT_ZONE = "example.com"


def hostname(row: Row, zone: str = DEFAULT_ZONE) -> str:
    return f"{row.row.lower()}.{zone}"


ROWS: tuple[Row, ...] = (
    Row("D1", {"access.group": "admin-users"}, {"": ("groups", ("admin-users",))}),
    Row("D2", {"access.groups": "admin-users,home-network"}, {"": ("groups", ("admin-users", "home-network"))}),
    Row("D3", {"access.groups": "public-eu,admin-users"}, {"": ("groups", ("public-eu", "admin-users"))}),
    Row("D4", {"access.policy": "bypass"}, {"": PUBLIC}),
    Row("D5", {"access.group": "bypass"}, {"": PUBLIC}),
    Row("D6", {"access.policy": "authenticate"}, {"": ("groups", ("authenticated-default",))}),
    Row("D8", {"access.policy": "default_tld"}, {"": ("none",)}),
    Row("D9", {"access.group": "public-default-bypass"}, {"": PUBLIC}),
    Row("D11", {"access.group": "team", "0.path": "/auth/google/callback", "0.access.policy": "bypass"},
        {"": ("groups", ("team",)), "0": PUBLIC}),
    Row("D12", {"access.group": "team", "0.path": "/auth/google/callback", "0.access.group": "public-default-bypass"},
        {"": ("groups", ("team",)), "0": PUBLIC}),
    Row("D13", {"access.custom_rules": '[{"email": {"email": "user@example.com"}, "action": "allow"}]'},
        {"": ("label", "a custom rule is a whole Access policy")}),
    Row("D14", {"access.session_duration": "1h"}, {"": ("none",)}),
    Row("E1", {"access.policy": " Bypass"}, {"": PUBLIC}),
    Row("E2", {"access.policy": "public"}, {"": ("label", "expected bypass, authenticate, default_tld or custom")}),
    Row("E3", {"access.policy": "custom", "access.custom_rules": CUSTOM}, {"": ("inline", ("allow",))}),
    Row("E4", {"access.policy": "custom", "access.custom_rules": "not json"}, {"": ("label", "is not valid JSON")}),
    Row("E5", {"access.group": "does-not-exist"}, {"": ("error", "access group 'does-not-exist' does not exist")}),
    Row("E6", {"access.groups": "admins,does-not-exist"}, {"": ("error", "'does-not-exist' does not exist")}),
    Row("E7", {"access.group": "admins", "access.policy": "bypass"}, {"": ("groups", ("admins",))}),
    Row("E8", {"access.groups": "public-default-bypass,admins"}, {"": ("error", "makes the service public")}),
    Row("E9", {"access.groups": "bypass,admins"}, {"": ("error", "makes the service public")}),
    Row("E10", {"access.group": "a,b"}, {"": ("groups", ("a", "b"))}),
    Row("E11", {"access.policy": "bypass", "0.path": "/b", "0.access.group": "b"},
        {"": PUBLIC, "0": ("groups", ("b",))}),
    Row("E12", {"access.groups": "a", "0.path": "/b", "0.access.group": "b"},
        {"": ("groups", ("a",)), "0": ("groups", ("b",))}),
    Row("E13", {"access.group": "a", "0.path": "/zone", "0.access.policy": "default_tld"},
        {"": ("groups", ("a",)), "0": ("none",)}),
    Row("E14", {"access.group": "a", "access.policy": "bypass", "0.path": "/same"},
        {"": ("groups", ("a",)), "0": ("groups", ("a",))}),
    Row("E16", {"access.policy": ""}, {"": ("none",)}),
    Row("E17", {"path": "api/", "access.group": "admins"}, {"": ("groups", ("admins",))}),
    Row("E18", {"path": "^/api/.*", "access.policy": "bypass"}, {"": ("error", "is a regular expression")}),
    Row("E19", {"access.custom_rules": CUSTOM}, {"": ("error", "only with access.policy=custom")}),
    Row("E24", {"access.policy": "authenticate", "access.groups": "staff"}, {"": ("groups", ("staff",))}),
    Row("E25", {"access.policy": "custom", "access.custom_rules": CUSTOM, "access.session_duration": "2h"},
        {"": ("inline", ("allow",))}),
)  # fmt: skip


def container_labels(row: Row, prefix: str = "dockflare.", zone: str = DEFAULT_ZONE) -> dict[str, str]:
    """The row's labels on a container: base hostname and service, and the same hostname for each index."""
    host = hostname(row, zone)
    labels = {f"{prefix}enable": "true", f"{prefix}hostname": host, f"{prefix}service": "http://app:80"}
    for key, value in row.labels.items():
        labels[prefix + key] = value
        index, dot, _ = key.partition(".")
        if dot and index.isdigit():
            labels.setdefault(f"{prefix}{index}.hostname", host)
    return labels


def rule_path(row: Row, which: str) -> str | None:
    """The path of the row's base rule (``which`` "") or of index ``which``, as the label parser normalises it."""
    raw = row.labels.get("path" if which == "" else f"{which}.path")
    if raw is None:
        return None
    raw = raw.strip()
    return raw if raw.startswith(("/", "^")) else "/" + raw
