"""The emulator's in-memory model of one Cloudflare tenant.

Everything Cloudflare would store lives here as plain JSON-able dicts shaped like Cloudflare's
responses, keyed by id.  Keeping the stored form equal to the wire form makes three things
trivial: the ``/__emulator/state`` dump, persistence to a JSON file, and comparing a stored
object with what the SDK returned.  Fields that Cloudflare never returns (a tunnel's secret,
the account an app belongs to) carry a leading underscore and are stripped by :func:`public`.

The model is pure: no I/O, no clock other than :func:`now_iso`, no knowledge of HTTP.  The
per-domain rules (``dns_store``, ``tunnels_store``, ``access_store``) mutate it and bump
:attr:`EmulatorState.revision`, which the persistence task watches.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flareport_cfemu.errors import bad_identifier

Json = dict[str, Any]
STATE_FORMAT = 1


def now_iso() -> str:
    """UTC timestamp in Cloudflare's format, e.g. ``2024-05-01T12:00:00.123456Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_hex_id() -> str:
    """32 lowercase hex characters, like zone, record and account ids."""
    return secrets.token_hex(16)


def new_uuid() -> str:
    """UUIDv4 string, like tunnel, Access app and policy ids."""
    return str(uuid.uuid4())


def public(obj: Json) -> Json:
    """A deep copy of ``obj`` without internal (underscore) fields, ready for a response."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


@dataclass
class EmulatorState:
    """All objects of the emulated tenant; mutated only through the ``*_store`` modules."""

    accounts: dict[str, Json] = field(default_factory=dict)
    zones: dict[str, Json] = field(default_factory=dict)
    # zone_id -> record_id -> record
    dns_records: dict[str, dict[str, Json]] = field(default_factory=dict)
    tunnels: dict[str, Json] = field(default_factory=dict)
    # tunnel_id -> {"version", "config", "created_at"}
    tunnel_configs: dict[str, Json] = field(default_factory=dict)
    access_apps: dict[str, Json] = field(default_factory=dict)
    access_policies: dict[str, Json] = field(default_factory=dict)
    # account_id -> tag name -> tag
    access_tags: dict[str, dict[str, Json]] = field(default_factory=dict)
    # account_id -> member id -> member (with its roles)
    account_members: dict[str, dict[str, Json]] = field(default_factory=dict)
    # Access identity providers (login methods), keyed by id, each with its ``_account_id``
    identity_providers: dict[str, Json] = field(default_factory=dict)
    revision: int = 0

    def touch(self) -> None:
        """Record that something changed (drives debounced persistence)."""
        self.revision += 1

    def reset(self) -> None:
        """Forget every object; the revision keeps counting so persistence notices."""
        revision = self.revision
        self.__dict__.update(EmulatorState().__dict__)
        self.revision = revision + 1

    # --- lookups that raise Cloudflare's "not found" -------------------------------------------

    def zone(self, zone_id: str, path: str) -> Json:
        zone = self.zones.get(zone_id)
        if zone is None:
            raise bad_identifier(path)
        return zone

    def account(self, account_id: str, path: str) -> Json:
        account = self.accounts.get(account_id)
        if account is None:
            raise bad_identifier(path)
        return account

    def records_of(self, zone_id: str) -> dict[str, Json]:
        return self.dns_records.setdefault(zone_id, {})

    # --- accounts and zones (Flareport only reads zones; the controls create them) -------------

    def add_account(self, *, name: str = "Emulated account", account_id: str | None = None) -> Json:
        account = {"id": account_id or new_hex_id(), "name": name, "type": "standard", "created_on": now_iso()}
        self.accounts[account["id"]] = account
        self.touch()
        return account

    def add_zone(
        self,
        *,
        name: str,
        account_id: str,
        zone_id: str | None = None,
        status: str = "active",
        plan: str = "free",
        created_on: str | None = None,
    ) -> Json:
        account = self.accounts.get(account_id) or self.add_account(account_id=account_id)
        created = created_on or now_iso()
        zone: Json = {
            "id": zone_id or new_hex_id(),
            "name": name.strip().rstrip(".").lower(),
            "status": status,
            "paused": False,
            "type": "full",
            "development_mode": 0,
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_name_servers": None,
            "original_registrar": None,
            "original_dnshost": None,
            "created_on": created,
            "modified_on": created,
            "activated_on": created if status == "active" else None,
            "meta": {"step": 2, "custom_certificate_quota": 0, "page_rule_quota": 3, "phishing_detected": False},
            "owner": {"id": None, "name": None, "type": "user"},  # the SDK's Zone.Owner: id, name, type
            "account": {"id": account["id"], "name": account["name"]},
            "tenant": {"id": None, "name": None},
            "tenant_unit": {"id": None},
            "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
            "plan": {
                "id": new_hex_id(),
                "name": f"{plan.capitalize()} Website",
                "price": 0,
                "currency": "USD",
                "frequency": "",
                "is_subscribed": plan != "free",
                "can_subscribe": False,
                "legacy_id": plan,
                "legacy_discount": False,
                "externally_managed": False,
            },
            "_plan": plan,
        }
        self.zones[zone["id"]] = zone
        self.dns_records.setdefault(zone["id"], {})
        self.touch()
        return zone

    # --- dump / load ---------------------------------------------------------------------------

    def dump(self) -> Json:
        """The whole state (internal fields included) as JSON-able data."""
        return {
            "format": STATE_FORMAT,
            "revision": self.revision,
            "accounts": copy.deepcopy(self.accounts),
            "zones": copy.deepcopy(self.zones),
            "dns_records": copy.deepcopy(self.dns_records),
            "tunnels": copy.deepcopy(self.tunnels),
            "tunnel_configs": copy.deepcopy(self.tunnel_configs),
            "access_apps": copy.deepcopy(self.access_apps),
            "access_policies": copy.deepcopy(self.access_policies),
            "access_tags": copy.deepcopy(self.access_tags),
            "account_members": copy.deepcopy(self.account_members),
            "identity_providers": copy.deepcopy(self.identity_providers),
        }

    @classmethod
    def load(cls, data: Json) -> EmulatorState:
        """Inverse of :meth:`dump`."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported emulator state format {data.get('format')!r}")
        return cls(
            accounts=copy.deepcopy(data.get("accounts", {})),
            zones=copy.deepcopy(data.get("zones", {})),
            dns_records=copy.deepcopy(data.get("dns_records", {})),
            tunnels=copy.deepcopy(data.get("tunnels", {})),
            tunnel_configs=copy.deepcopy(data.get("tunnel_configs", {})),
            access_apps=copy.deepcopy(data.get("access_apps", {})),
            access_policies=copy.deepcopy(data.get("access_policies", {})),
            access_tags=copy.deepcopy(data.get("access_tags", {})),
            account_members=copy.deepcopy(data.get("account_members", {})),
            identity_providers=copy.deepcopy(data.get("identity_providers", {})),
            revision=int(data.get("revision", 0)),
        )
