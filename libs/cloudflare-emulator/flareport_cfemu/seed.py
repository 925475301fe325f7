"""Seeding: build a tenant from one JSON document (a file or ``POST /__emulator/seed``).

Seeds go through the same validation as API calls - a seed cannot create a state Cloudflare
would refuse (two CNAMEs on one name, an invalid ingress) - and may fix ids so that tests and
the demo stack can refer to well-known objects.  Objects may name their account with
``account_id`` and their zone with ``zone_id`` or ``zone_name``; when left out, the first
account is used.  Document shape::

    {"accounts": [{"id", "name", "owner_email", "one_time_pin"}],
     "zones": [{"id", "name", "account_id", "status", "plan", "created_on"}],
     "dns_records": [{"zone_id" | "zone_name", "id", "name", "type", "content", ...}],
     "tunnels": [{"account_id", "id", "name", "config_src", "tunnel_secret", "config", "deleted"}],
     "access_tags": [{"account_id", "name"}],
     "access_policies": [{"account_id", "id", "name", "decision", "include", ...}],
     "access_apps": [{"account_id", "domain", "type", "name", "policies", "tags", ...}],
     "account_members": [{"account_id", "email", "roles": [{"name", "permissions"}], "status"}],
     "access_identity_providers": [{"account_id", "id", "name", "type", "config"}]}

A seeded account gets its owner as a member (``owner_email``, default ``owner@example.com``) and a One-time PIN
login method unless ``one_time_pin`` is false (account_store.py).
"""

from __future__ import annotations

from typing import Any

from flareport_cfemu import access_apps, access_store, account_store, dns_store, tunnels_store
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.errors import INVALID_REQUEST, bad_request
from flareport_cfemu.state import EmulatorState

Json = dict[str, Any]
SEED_PATH = "/__emulator/seed"
DEFAULT_OWNER_EMAIL = "owner@example.com"


def _items(data: Json, key: str) -> list[Json]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise bad_request(INVALID_REQUEST, f"seed: {key} must be a list of objects")
    return items


def _account_id(state: EmulatorState, item: Json) -> str:
    account_id = item.get("account_id") or (item.get("account") or {}).get("id")
    if account_id:
        if account_id not in state.accounts:
            state.add_account(account_id=str(account_id))
        return str(account_id)
    if not state.accounts:
        return str(state.add_account()["id"])
    return next(iter(state.accounts))


def _zone_id(state: EmulatorState, item: Json) -> str:
    if item.get("zone_id"):
        return str(item["zone_id"])
    name = str(item.get("zone_name") or "").lower()
    for zone in state.zones.values():
        if zone["name"] == name:
            return str(zone["id"])
    if len(state.zones) == 1 and not name:
        return next(iter(state.zones))
    raise bad_request(INVALID_REQUEST, f"seed: record {item.get('name')!r} names no known zone")


def _strip(item: Json, *keys: str) -> Json:
    return {k: v for k, v in item.items() if k not in keys}


def apply_seed(state: EmulatorState, config: EmulatorConfig, data: Json) -> Json:
    """Add everything in ``data`` to ``state``; returns the created objects' ids per kind."""
    created: dict[str, list[str]] = {}
    for item in _items(data, "accounts"):
        account = state.add_account(name=str(item.get("name", "Emulated account")), account_id=item.get("id"))
        created.setdefault("accounts", []).append(account["id"])
        owner = str(item.get("owner_email") or DEFAULT_OWNER_EMAIL)
        account_store.add_member(state, account["id"], {"email": owner})
        if item.get("one_time_pin", True):
            account_store.add_identity_provider(state, account["id"], {"name": "One-time PIN", "type": "onetimepin"})
    for item in _items(data, "zones"):
        zone = state.add_zone(
            name=str(item["name"]),
            account_id=_account_id(state, item),
            zone_id=item.get("id"),
            status=str(item.get("status", "active")),
            plan=str(item.get("plan", "free")),
            created_on=str(item["created_on"]) if item.get("created_on") else None,
        )
        created.setdefault("zones", []).append(zone["id"])
    for item in _items(data, "dns_records"):
        zone_id = _zone_id(state, item)
        record = dns_store.create_record(state, config, zone_id, _strip(item, "zone_id", "zone_name", "id"), SEED_PATH)
        if item.get("id"):
            records = state.records_of(zone_id)
            records[item["id"]] = {**records.pop(record["id"]), "id": item["id"]}
            record["id"] = item["id"]
        created.setdefault("dns_records", []).append(record["id"])
    for item in _items(data, "tunnels"):
        account_id = _account_id(state, item)
        body = _strip(item, "account_id", "id", "config", "deleted")
        tunnel = tunnels_store.create_tunnel(state, account_id, body, SEED_PATH, tunnel_id=item.get("id"))
        if "config" in item:
            tunnels_store.put_config(state, account_id, tunnel["id"], {"config": item["config"]}, SEED_PATH)
        if item.get("deleted"):
            tunnels_store.delete_tunnel(state, account_id, tunnel["id"], SEED_PATH)
        created.setdefault("tunnels", []).append(tunnel["id"])
    for item in _items(data, "access_tags"):
        access_store.create_tag(state, _account_id(state, item), _strip(item, "account_id"))
        created.setdefault("access_tags", []).append(str(item.get("name")))
    for item in _items(data, "access_policies"):
        policy = access_store.create_policy(state, _account_id(state, item), _strip(item, "account_id", "id"))
        if item.get("id"):
            state.access_policies[item["id"]] = {**state.access_policies.pop(policy["id"]), "id": item["id"]}
        created.setdefault("access_policies", []).append(str(item.get("id") or policy["id"]))
    for item in _items(data, "account_members"):
        member = account_store.add_member(state, _account_id(state, item), _strip(item, "account_id"))
        created.setdefault("account_members", []).append(member["id"])
    for item in _items(data, "access_identity_providers"):
        idp = account_store.add_identity_provider(state, _account_id(state, item), _strip(item, "account_id"))
        created.setdefault("access_identity_providers", []).append(idp["id"])
    for item in _items(data, "access_apps"):
        app = access_apps.create_app(state, _account_id(state, item), _strip(item, "account_id"))
        created.setdefault("access_apps", []).append(app["id"])
    return created
