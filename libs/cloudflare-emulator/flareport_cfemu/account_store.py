"""Account members (with their roles) and Access identity providers (login methods): the stored objects.

Routes in :mod:`routes_account`; seeds use the same functions (a seeded account gets its owner and a One-time PIN
login method, seed.py).
"""

from __future__ import annotations

from typing import Any

from flareport_cfemu.access_store import invalid
from flareport_cfemu.state import EmulatorState, new_hex_id, new_uuid, now_iso

Json = dict[str, Any]
IDP_TYPES = frozenset(
    {
        "onetimepin",
        "azureAD",
        "saml",
        "centrify",
        "facebook",
        "github",
        "google-apps",
        "google",
        "linkedin",
        "oidc",
        "okta",
        "onelogin",
        "pingone",
        "yandex",
    }
)
ALL_PERMISSIONS = (
    "analytics",
    "billing",
    "cache_purge",
    "dns",
    "dns_records",
    "lb",
    "logs",
    "organization",
    "ssl",
    "waf",
    "zone_settings",
    "zones",
)
OWNER_ROLE: Json = {
    "id": "33666b9c79b9a5273fc7344ff42f953d",
    "name": "Super Administrator - All Privileges",
    "description": "Can edit any Cloudflare setting, make purchases, update billing, and manage memberships.",
    "permissions": {name: {"read": True, "write": True} for name in ALL_PERMISSIONS},
}


def add_member(state: EmulatorState, account_id: str, body: Json) -> Json:
    """A member of ``account_id``: ``email`` (required), ``roles`` (role objects; default the owner's role),
    ``status`` (default ``accepted``), ``id``."""
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise invalid("a member needs an email")
    roles = body.get("roles", [OWNER_ROLE])
    if not isinstance(roles, list) or not all(isinstance(r, dict) and r.get("name") for r in roles):
        raise invalid("roles must be a list of role objects with a name")
    member_id = str(body.get("id") or new_hex_id())
    member = {
        "id": member_id,
        "email": email,
        "status": str(body.get("status", "accepted")),
        "user": {
            "id": new_hex_id(),
            "email": email,
            "first_name": body.get("first_name"),
            "last_name": body.get("last_name"),
            "two_factor_authentication_enabled": False,
        },
        "roles": [{"id": str(r.get("id") or new_hex_id()), "description": "", "permissions": {}, **r} for r in roles],
        "policies": [],
    }
    state.account_members.setdefault(account_id, {})[member_id] = member
    state.touch()
    return member


def add_identity_provider(state: EmulatorState, account_id: str, body: Json) -> Json:
    idp_type = body.get("type")
    if idp_type not in IDP_TYPES:
        raise invalid(f"type must be one of {', '.join(sorted(IDP_TYPES))}")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("identity provider name is required")
    config = body.get("config", {})
    if not isinstance(config, dict):
        raise invalid("config must be an object")
    if idp_type == "onetimepin" and any(
        p["type"] == "onetimepin" and p["_account_id"] == account_id for p in state.identity_providers.values()
    ):
        raise invalid("a One-time PIN identity provider already exists")
    now = now_iso()
    idp = {
        "id": str(body.get("id") or new_uuid()),
        "name": name.strip(),
        "type": idp_type,
        "config": config,
        "scim_config": {"enabled": False},
        "created_at": now,
        "updated_at": now,
        "_account_id": account_id,
    }
    state.identity_providers[idp["id"]] = idp
    state.touch()
    return idp
