"""Access planning: the self-hosted application (and reusable policies) a host+path should have.

Pure functions from an ``AccessSpec`` (the ``access.*`` labels) to Cloudflare request bodies, and the
comparison that decides whether a write is needed:

* ``policy=bypass`` -> one app-scoped policy ``bypass`` for everyone (the public bypass DockFlare offers);
* ``policy=authenticate`` / ``default_tld`` / custom rules -> one ``allow`` policy, including the custom
  rules when given, else every authenticated identity;
* ``groups`` -> one reusable policy per access group (defined by the admin, resolved by the reconciler),
  linked to the app in the order given, after the app-scoped policy.

Our apps carry the account tag ``flareport`` (configurable); an app on the same domain without it was
made by someone else and is never touched — the result reports a conflict instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flareport_common.messages.cfjobs import DesiredAccessApp
from flareport_common.messages.cfresults import CfError

EVERYONE: list[dict[str, Any]] = [{"everyone": {}}]
GROUP_POLICY_PREFIX = "flareport group "
CONFLICT_CODE = 12130


def app_domain(hostname: str, path: str | None) -> str:
    return hostname.lower() + (path or "")


def group_policy_name(group_id: str) -> str:
    return GROUP_POLICY_PREFIX + group_id


def reusable_policy_body(group_id: str, definition: Mapping[str, Any]) -> dict[str, Any]:
    """A reusable policy from an access group definition (``decision``, ``include``, ``exclude``, ``require``)."""
    body: dict[str, Any] = {
        "name": group_policy_name(group_id),
        "decision": str(definition.get("decision", "allow")),
        "include": list(definition.get("include") or EVERYONE),
    }
    for key in ("exclude", "require"):
        if definition.get(key):
            body[key] = list(definition[key])
    if definition.get("session_duration"):
        body["session_duration"] = str(definition["session_duration"])
    return body


def inline_policy(app: DesiredAccessApp) -> dict[str, Any] | None:
    spec = app.spec
    if spec.policy == "bypass":
        return {"name": "flareport bypass", "decision": "bypass", "include": list(EVERYONE)}
    if spec.custom_rules:
        return {"name": "flareport allow", "decision": "allow", "include": [dict(r) for r in spec.custom_rules]}
    if spec.policy in ("authenticate", "default_tld") or not app.groups:
        return {"name": "flareport allow", "decision": "allow", "include": list(EVERYONE)}
    return None


def app_body(app: DesiredAccessApp, tag: str, group_policy_ids: Mapping[str, str]) -> dict[str, Any]:
    """The full body of ``POST``/``PUT /access/apps`` (a PUT replaces the app as a whole)."""
    spec = app.spec
    domain = app_domain(app.hostname, app.path)
    policies: list[dict[str, Any]] = []
    inline = inline_policy(app)
    if inline is not None:
        policies.append({**inline, "precedence": 1})
    for group_id in spec.groups or tuple(app.groups):
        policy_id = group_policy_ids.get(group_id)
        if policy_id is not None:
            policies.append({"id": policy_id, "precedence": len(policies) + 1})
    body: dict[str, Any] = {
        "type": "self_hosted",
        "name": spec.name or domain,
        "domain": domain,
        "session_duration": spec.session_duration or "24h",
        "tags": [tag],
        "policies": policies,
    }
    if spec.app_launcher_visible is not None:
        body["app_launcher_visible"] = spec.app_launcher_visible
    if spec.allowed_idps:
        body["allowed_idps"] = list(spec.allowed_idps)
    if spec.auto_redirect_to_identity is not None:
        body["auto_redirect_to_identity"] = spec.auto_redirect_to_identity
    return body


def is_ours(current: Mapping[str, Any], tag: str) -> bool:
    return tag in (current.get("tags") or [])


def _policy_view(policy: Mapping[str, Any]) -> tuple[Any, ...]:
    if "decision" not in policy:
        return ("link", policy.get("id"), policy.get("precedence"))
    return (
        policy.get("name"),
        policy.get("decision"),
        policy.get("include") or [],
        policy.get("exclude") or [],
        policy.get("require") or [],
        policy.get("precedence"),
    )


def app_matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """True when ``current`` (as Cloudflare returns it) already is ``wanted``: no write needed."""
    for key, value in wanted.items():
        if key == "policies":
            continue
        if current.get(key) != value:
            return False
    have = []
    for policy in current.get("policies") or []:
        # Reusable policies show up expanded; compare them by link, app-scoped ones by content.
        if policy.get("reusable"):
            have.append(("link", policy.get("id"), policy.get("precedence")))
        else:
            have.append(_policy_view(policy))
    return have == [_policy_view(p) for p in wanted["policies"]]


def policy_matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(current.get(k) == v for k, v in wanted.items())


def foreign_app_conflict(hostname: str, path: str | None, current: Mapping[str, Any], tag: str) -> CfError:
    return CfError(
        code=CONFLICT_CODE,
        message=(
            f"Access application {current.get('name')!r} on {app_domain(hostname, path)} has no {tag!r} tag: "
            "it was not made by Flareport and is left untouched"
        ),
        hostname=hostname,
        path=path,
        kind="conflict",
    )
