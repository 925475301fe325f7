"""Cloudflare Access: self-hosted applications, reusable and app-scoped policies, and tags.

Applications reference policies by link (``{"id", "precedence"}``, or just the id) or carry them
inline; inline policies become app-scoped policies owned by the app, as on Cloudflare.  Links
are resolved on every read, so editing a reusable policy shows up in every app that uses it and
``app_count`` is always true.  Tags must exist (``POST /access/tags``) before an app can carry
them.  Every Access error uses Cloudflare's Access error code (12130) with a message in the
``access.api.error.*`` style.
"""

from __future__ import annotations

import re
from typing import Any

from flareport_cfemu import errors
from flareport_cfemu.errors import ApiError
from flareport_cfemu.state import EmulatorState, new_uuid, now_iso, public

Json = dict[str, Any]
DECISIONS = frozenset({"allow", "deny", "non_identity", "bypass"})
APP_TYPES = frozenset(
    {
        "self_hosted",
        "saas",
        "ssh",
        "vnc",
        "app_launcher",
        "warp",
        "biso",
        "bookmark",
        "dash_sso",
        "infrastructure",
        "rdp",
    }
)
DURATION_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+\Z")
POLICY_FIELDS = (
    "approval_groups",
    "approval_required",
    "isolation_required",
    "purpose_justification_prompt",
    "purpose_justification_required",
    "session_duration",
    "mfa_config",
    "connection_rules",
)
APP_DEFAULTS: Json = {
    "allowed_idps": [],
    "app_launcher_visible": True,
    "auto_redirect_to_identity": False,
    "enable_binding_cookie": False,
    "http_only_cookie_attribute": True,
    "options_preflight_bypass": False,
    "service_auth_401_redirect": False,
    "skip_interstitial": False,
    "session_duration": "24h",
    "tags": [],
}


def invalid(message: str) -> ApiError:
    return ApiError(400, errors.ACCESS_ERROR, f"access.api.error.invalid_request: {message}")


def missing(what: str) -> ApiError:
    return ApiError(404, errors.ACCESS_ERROR, f"access.api.error.not_found: {what} not found")


# --- policies -----------------------------------------------------------------------------------


def _rules(body: Json, key: str, *, required: bool) -> list[Json]:
    rules = body.get(key)
    if rules is None and not required:
        return []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules) or (required and not rules):
        raise invalid(f"{key} must be a non-empty list of rules" if required else f"{key} must be a list of rules")
    return rules


def _policy_fields(body: Json) -> Json:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("policy name is required")
    decision = body.get("decision")
    if decision not in DECISIONS:
        raise invalid(f"decision must be one of {', '.join(sorted(DECISIONS))}")
    duration = body.get("session_duration", "24h")
    if not isinstance(duration, str) or not DURATION_RE.match(duration):
        raise invalid(f"session_duration {duration!r} is not a duration like '24h' or '30m'")
    fields: Json = {
        "name": name.strip(),
        "decision": decision,
        "include": _rules(body, "include", required=True),
        "exclude": _rules(body, "exclude", required=False),
        "require": _rules(body, "require", required=False),
        "approval_groups": [],
        "approval_required": False,
        "isolation_required": False,
        "purpose_justification_required": False,
    }
    fields.update({k: body[k] for k in POLICY_FIELDS if k in body})
    fields["session_duration"] = duration
    return fields


def _app_count(state: EmulatorState, policy_id: str) -> int:
    return sum(1 for app in state.access_apps.values() if any(link["id"] == policy_id for link in app["_policy_links"]))


def render_policy(state: EmulatorState, policy: Json, precedence: int | None = None, *, embedded: bool = False) -> Json:
    out = public(policy)
    if embedded or not policy["reusable"]:
        # The SDK's models (Cloudflare's schema) have `reusable` and `app_count` on a reusable policy read on its
        # own only: not on an app-scoped policy, nor on any policy embedded in an app (the contract checks say so).
        out.pop("reusable", None)
    else:
        out["app_count"] = _app_count(state, policy["id"])
    if precedence is not None:
        out["precedence"] = precedence
    return out


def reusable_policy(state: EmulatorState, account_id: str, policy_id: str) -> Json:
    policy = state.access_policies.get(policy_id)
    if policy is None or policy["_account_id"] != account_id or not policy["reusable"]:
        raise missing("policy")
    return policy


def create_policy(state: EmulatorState, account_id: str, body: Json, *, app_id: str | None = None) -> Json:
    now = now_iso()
    policy = {
        "id": new_uuid(),
        **_policy_fields(body),
        "reusable": app_id is None,
        "created_at": now,
        "updated_at": now,
        "_account_id": account_id,
        "_app_id": app_id,
    }
    state.access_policies[policy["id"]] = policy
    state.touch()
    return policy


def update_policy(state: EmulatorState, policy: Json, body: Json) -> Json:
    policy.update(_policy_fields(body))
    policy["updated_at"] = now_iso()
    state.touch()
    return policy


def delete_reusable_policy(state: EmulatorState, account_id: str, policy_id: str) -> Json:
    reusable_policy(state, account_id, policy_id)
    in_use = _app_count(state, policy_id)
    if in_use:
        raise invalid(f"policy {policy_id} is used by {in_use} application(s); remove it from them first")
    del state.access_policies[policy_id]
    state.touch()
    return {"id": policy_id}


def list_reusable_policies(state: EmulatorState, account_id: str) -> list[Json]:
    chosen = [p for p in state.access_policies.values() if p["_account_id"] == account_id and p["reusable"]]
    chosen.sort(key=lambda p: (p["created_at"], p["id"]))
    return [render_policy(state, p) for p in chosen]


# --- tags ---------------------------------------------------------------------------------------


def tags_of(state: EmulatorState, account_id: str) -> dict[str, Json]:
    return state.access_tags.setdefault(account_id, {})


def render_tag(state: EmulatorState, account_id: str, tag: Json) -> Json:
    count = sum(
        1 for a in state.access_apps.values() if a["_account_id"] == account_id and tag["name"] in a.get("tags", [])
    )
    return {**tag, "app_count": count}


def create_tag(state: EmulatorState, account_id: str, body: Json) -> Json:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("tag name is required")
    tags = tags_of(state, account_id)
    if name in tags:
        # 409, as Cloudflare answers a duplicate create elsewhere in Access (an application on a taken domain);
        # the exact status for tags is not documented, and 409 is the stricter of the two seen (400/409).
        raise ApiError(409, errors.ACCESS_ERROR, f"access.api.error.conflict: tag {name!r} already exists")
    now = now_iso()
    tags[name] = {"name": name, "created_at": now, "updated_at": now}
    state.touch()
    return render_tag(state, account_id, tags[name])


def delete_tag(state: EmulatorState, account_id: str, name: str) -> Json:
    tags = tags_of(state, account_id)
    if name not in tags:
        raise missing("tag")
    if render_tag(state, account_id, tags[name])["app_count"]:
        raise invalid(f"tag {name!r} is still used by applications")
    del tags[name]
    state.touch()
    return {"name": name}
