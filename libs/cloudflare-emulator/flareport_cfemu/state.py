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
from flareport_cfemu.zone_records import ZoneRecords

Json = dict[str, Any]
STATE_FORMAT = 1
_SCALARS = frozenset({str, int, float, bool, type(None)})


def now_iso() -> str:
    """UTC timestamp in Cloudflare's format, e.g. ``2024-05-01T12:00:00.123456Z``."""
    # isoformat's "+00:00" swapped for "Z": the same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ") at a third less
    # cost, and every API request stamps its log entry.
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def new_hex_id() -> str:
    """32 lowercase hex characters, like zone, record and account ids."""
    return secrets.token_hex(16)


def new_uuid() -> str:
    """UUIDv4 string, like tunnel, Access app and policy ids."""
    return str(uuid.uuid4())


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data, as plain dicts and lists.

    The stored objects are JSON data (dicts, lists, scalars), which this copies at a fraction of
    ``copy.deepcopy``'s cost (no memo, no dispatch); anything else still goes through ``copy.deepcopy``.
    """
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return copy.deepcopy(value)


def public(obj: Json) -> Json:
    """A deep copy of ``obj`` without internal (underscore) fields, ready for a response."""
    return {k: json_copy(v) for k, v in obj.items() if not k.startswith("_")}


@dataclass
class EmulatorState:
    """All objects of the emulated tenant; mutated only through the ``*_store`` modules."""

    accounts: dict[str, Json] = field(default_factory=dict)
    zones: dict[str, Json] = field(default_factory=dict)
    # zone_id -> record_id -> record, indexed by name (zone_records.py); plain dicts given here are wrapped
    dns_records: dict[str, ZoneRecords] = field(default_factory=dict)
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
    # (account id, tunnel name) -> ids of the tunnels created or renamed with that name: the candidates of the
    # unique-name check, which looks at each tunnel itself (one renamed or deleted since is passed over), so only
    # the creates and renames of tunnels_store (and loading) add to it, and nothing needs taking out.
    tunnel_names: dict[tuple[str, str], set[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.dns_records = {zone_id: ZoneRecords(records) for zone_id, records in self.dns_records.items()}
        for tunnel in self.tunnels.values():
            self.name_tunnel(tunnel)

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

    def records_of(self, zone_id: str) -> ZoneRecords:
        records = self.dns_records.get(zone_id)
        if not isinstance(records, ZoneRecords):  # absent, or a plain dict put there from outside
            records = self.dns_records[zone_id] = ZoneRecords(records or {})
        return records

    def name_tunnel(self, tunnel: Json) -> None:
        """Note the tunnel's current name for the unique-name check (after a create or a rename)."""
        self.tunnel_names.setdefault((tunnel["account_tag"], tunnel["name"]), set()).add(tunnel["id"])

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
        self.records_of(zone["id"])
        self.touch()
        return zone

    # --- dump / load ---------------------------------------------------------------------------

    def view(self) -> Json:
        """:meth:`dump`'s content over the live objects, for a caller that serialises it at once and keeps nothing.

        The state endpoint and the state file render megabytes of JSON from it; a copy first doubled that cost.
        """
        return {
            "format": STATE_FORMAT,
            "revision": self.revision,
            "accounts": self.accounts,
            "zones": self.zones,
            "dns_records": self.dns_records,
            "tunnels": self.tunnels,
            "tunnel_configs": self.tunnel_configs,
            "access_apps": self.access_apps,
            "access_policies": self.access_policies,
            "access_tags": self.access_tags,
            "account_members": self.account_members,
            "identity_providers": self.identity_providers,
        }

    def dump(self) -> Json:
        """The whole state (internal fields included) as JSON-able data, a copy the caller may keep or change."""
        dumped: Json = json_copy(self.view())
        return dumped

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
