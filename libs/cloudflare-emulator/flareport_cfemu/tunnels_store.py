"""Cloudflare Tunnel (``cfd_tunnel``) objects, their tokens and remote configurations.

A tunnel belongs to an account, has a unique name among the account's non-deleted tunnels
(Cloudflare answers 409 with code 1013 otherwise), and is soft-deleted: ``DELETE`` sets ``deleted_at`` and the
tunnel stays listable with ``is_deleted=true``.  The token is what ``cloudflared tunnel run``
takes in ``TUNNEL_TOKEN``: base64 of the JSON ``{"a": account, "t": tunnel id, "s": secret}``,
exactly cloudflared's format, so an agent under test can decode it.  The configuration is
versioned: every accepted ``PUT`` increments ``version``.

Connections: a connector (``cloudflared``) is connected or disconnected through the control surface
(``connect``/``disconnect``). A disconnected connector's connections linger, marked ``is_pending_reconnect``, for
``connection_linger_seconds`` (Cloudflare "continues to track connections for several minutes after they
disconnect"). A tunnel with any connection, live or lingering, refuses ``DELETE`` (400, code 1022) unless the
delete says ``cascade=true``. ``DELETE .../connections`` removes lingering connections (of one ``client_id`` or
all); a connector that is still running keeps its connections (it would register them again at once).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from typing import Any

from flareport_cfemu import errors
from flareport_cfemu.envelope import query_bool
from flareport_cfemu.errors import ApiError, bad_request
from flareport_cfemu.ingress import validate_config
from flareport_cfemu.state import EmulatorState, new_uuid, now_iso, public

Json = dict[str, Any]


def _secret(raw: Any) -> str:
    if raw is None:
        return base64.b64encode(secrets.token_bytes(32)).decode()
    try:
        decoded = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) < 32:
        raise bad_request(errors.INVALID_REQUEST, "tunnel_secret must be at least 32 bytes, encoded as base64")
    return str(raw)


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise bad_request(errors.INVALID_REQUEST, "name is required")
    return raw.strip()


def _check_unique(state: EmulatorState, account_id: str, name: str, self_id: str | None) -> None:
    # Only the tunnels ever given this name in this account can hold it now (state.tunnel_names): a scan of every
    # tunnel per create made 1,000 creates cost half a million comparisons.
    for candidate in state.tunnel_names.get((account_id, name), ()):
        tunnel = state.tunnels.get(candidate)
        if (
            tunnel is not None
            and tunnel["account_tag"] == account_id
            and tunnel["name"] == name
            and tunnel["deleted_at"] is None
            and tunnel["id"] != self_id
        ):
            # 409, not 400: cloudflared's own API client (cfapi.CreateTunnel) maps a 409 answer to a create to
            # "tunnel with name already exists".
            raise ApiError(
                409,
                errors.TUNNEL_NAME_TAKEN,
                "You already have a tunnel with this name. Delete the existing tunnel, or choose a different "
                "name for your new tunnel",
            )


def token_for(tunnel: Json) -> str:
    payload = {"a": tunnel["account_tag"], "t": tunnel["id"], "s": tunnel["_secret"]}
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _tunnel_not_found(tunnel_id: str) -> ApiError:
    return ApiError(404, errors.BAD_IDENTIFIER, f"Tunnel {tunnel_id} not found")


def lookup(state: EmulatorState, account_id: str, tunnel_id: str, path: str, *, live: bool = False) -> Json:
    state.account(account_id, path)
    tunnel = state.tunnels.get(tunnel_id)
    if tunnel is None or tunnel["account_tag"] != account_id or (live and tunnel["deleted_at"] is not None):
        raise _tunnel_not_found(tunnel_id)
    return tunnel


def create_tunnel(
    state: EmulatorState, account_id: str, body: Json, path: str, *, tunnel_id: str | None = None
) -> Json:
    state.account(account_id, path)
    name = _name(body.get("name"))
    config_src = body.get("config_src", "local")
    if config_src not in {"local", "cloudflare"}:
        raise bad_request(errors.INVALID_REQUEST, "config_src must be 'local' or 'cloudflare'")
    _check_unique(state, account_id, name, None)
    tunnel: Json = {
        "id": tunnel_id or new_uuid(),
        "account_tag": account_id,
        "name": name,
        "created_at": now_iso(),
        "deleted_at": None,
        "connections": [],
        "conns_active_at": None,
        "conns_inactive_at": None,
        "tun_type": "cfd_tunnel",
        "metadata": {},
        "status": "inactive",
        "remote_config": config_src == "cloudflare",
        "config_src": config_src,
        "_secret": _secret(body.get("tunnel_secret")),
    }
    state.tunnels[tunnel["id"]] = tunnel
    state.name_tunnel(tunnel)
    state.touch()
    created = public(tunnel)
    created["token"] = token_for(tunnel)
    created["credentials_file"] = {
        "AccountTag": account_id,
        "TunnelID": tunnel["id"],
        "TunnelName": name,
        "TunnelSecret": tunnel["_secret"],
    }
    return created


def list_tunnels(state: EmulatorState, account_id: str, query: Any, path: str) -> list[Json]:
    state.account(account_id, path)
    is_deleted = query_bool(query, "is_deleted")
    name, uuid, status = query.get("name"), query.get("uuid"), query.get("status")
    include, exclude = query.get("include_prefix"), query.get("exclude_prefix")
    chosen = []
    for tunnel in state.tunnels.values():
        if tunnel["account_tag"] != account_id:
            continue
        if is_deleted is not None and (tunnel["deleted_at"] is not None) != is_deleted:
            continue
        if (
            (name and tunnel["name"] != name)
            or (uuid and tunnel["id"] != uuid)
            or (status and tunnel["status"] != status)
        ):
            continue
        if (include and not tunnel["name"].startswith(include)) or (exclude and tunnel["name"].startswith(exclude)):
            continue
        chosen.append(public(tunnel))
    chosen.sort(key=lambda t: (t["created_at"], t["id"]))
    return chosen


def edit_tunnel(state: EmulatorState, account_id: str, tunnel_id: str, body: Json, path: str) -> Json:
    tunnel = lookup(state, account_id, tunnel_id, path, live=True)
    if "name" in body:
        name = _name(body["name"])
        _check_unique(state, account_id, name, tunnel_id)
        tunnel["name"] = name
        state.name_tunnel(tunnel)
    if "tunnel_secret" in body:
        tunnel["_secret"] = _secret(body["tunnel_secret"])
    state.touch()
    return public(tunnel)


def _connectors(tunnel: Json, linger_seconds: float) -> list[Json]:
    """The tunnel's connectors that still count: running ones and those disconnected less than the linger ago."""
    now = time.time()
    kept = [
        c
        for c in tunnel.get("_connectors", [])
        if c["disconnected_at"] is None or now - float(c["disconnected_at"]) < linger_seconds
    ]
    if len(kept) != len(tunnel.get("_connectors", [])):
        tunnel["_connectors"] = kept
    return kept


def _refresh_status(tunnel: Json, linger_seconds: float) -> None:
    connectors = _connectors(tunnel, linger_seconds)
    if any(c["disconnected_at"] is None for c in connectors):
        tunnel["status"] = "healthy"
    elif tunnel.get("conns_active_at"):
        tunnel["status"] = "down"


def connect(state: EmulatorState, account_id: str, tunnel_id: str, *, client_id: str | None, connections: int) -> Json:
    """A connector starts (``cloudflared tunnel run``): ``connections`` connections to the edge."""
    tunnel = lookup(state, account_id, tunnel_id, "/__emulator/tunnels", live=True)
    client = client_id or new_uuid()
    stamp = now_iso()
    connector: Json = {
        "id": client,
        "arch": "linux_amd64",
        "version": "2024.12.2",
        "run_at": stamp,
        "disconnected_at": None,
        "conns": [
            {"id": new_uuid(), "colo_name": f"emu{i:02}", "opened_at": stamp, "origin_ip": "192.0.2.10"}
            for i in range(max(1, connections))
        ],
    }
    tunnel["_connectors"] = [c for c in tunnel.get("_connectors", []) if c["id"] != client] + [connector]
    tunnel["conns_active_at"] = stamp
    tunnel["conns_inactive_at"] = None
    tunnel["status"] = "healthy"
    state.touch()
    return {"client_id": client}


def disconnect(state: EmulatorState, account_id: str, tunnel_id: str, *, client_id: str | None) -> Json:
    """Connectors stop (one, or all): their connections linger as ``is_pending_reconnect``."""
    tunnel = lookup(state, account_id, tunnel_id, "/__emulator/tunnels")
    stopped = 0
    for connector in tunnel.get("_connectors", []):
        if connector["disconnected_at"] is None and client_id in (None, connector["id"]):
            connector["disconnected_at"] = time.time()
            stopped += 1
    if not any(c["disconnected_at"] is None for c in tunnel.get("_connectors", [])):
        tunnel["conns_inactive_at"] = now_iso()
        tunnel["status"] = "down" if tunnel.get("conns_active_at") else tunnel["status"]
    state.touch()
    return {"stopped": stopped}


def list_connections(
    state: EmulatorState, account_id: str, tunnel_id: str, path: str, *, linger_seconds: float
) -> list[Json]:
    tunnel = lookup(state, account_id, tunnel_id, path)
    clients = []
    for connector in _connectors(tunnel, linger_seconds):
        pending = connector["disconnected_at"] is not None
        conns = [
            {
                **conn,
                "client_id": connector["id"],
                "client_version": connector["version"],
                "is_pending_reconnect": pending,
            }
            for conn in connector["conns"]
        ]
        clients.append(
            {
                "id": connector["id"],
                "arch": connector["arch"],
                "version": connector["version"],
                "run_at": connector["run_at"],
                "features": [],
                "config_version": 0,
                "conns": conns,
            }
        )
    return clients


def clean_connections(
    state: EmulatorState, account_id: str, tunnel_id: str, path: str, *, client_id: str | None, linger_seconds: float
) -> None:
    """``DELETE .../connections``: lingering connections go; a running connector keeps (re-registers) its own."""
    tunnel = lookup(state, account_id, tunnel_id, path, live=True)
    tunnel["_connectors"] = [
        c
        for c in _connectors(tunnel, linger_seconds)
        if c["disconnected_at"] is None or client_id not in (None, c["id"])
    ]
    _refresh_status(tunnel, linger_seconds)
    state.touch()


def delete_tunnel(
    state: EmulatorState,
    account_id: str,
    tunnel_id: str,
    path: str,
    *,
    cascade: bool = False,
    linger_seconds: float = 0.0,
) -> Json:
    tunnel = lookup(state, account_id, tunnel_id, path, live=True)
    connectors = _connectors(tunnel, linger_seconds)
    if connectors and not cascade:
        live = sum(1 for c in connectors if c["disconnected_at"] is None)
        raise bad_request(
            errors.TUNNEL_HAS_CONNECTIONS,
            f"Cannot delete tunnel {tunnel_id} because it has active connections "
            f"({live} connector(s) running, {len(connectors) - live} disconnected but still tracked). "
            "Clean up its connections or delete it with cascade=true",
        )
    tunnel["_connectors"] = []
    tunnel["deleted_at"] = now_iso()
    state.touch()
    return public(tunnel)


def get_config(state: EmulatorState, account_id: str, tunnel_id: str, path: str) -> Json:
    tunnel = lookup(state, account_id, tunnel_id, path)
    stored = state.tunnel_configs.get(tunnel_id)
    return {
        "account_id": account_id,
        "tunnel_id": tunnel_id,
        "version": stored["version"] if stored else 0,
        "config": json.loads(json.dumps(stored["config"])) if stored else None,
        "source": "cloudflare",
        "created_at": stored["created_at"] if stored else tunnel["created_at"],
    }


def put_config(state: EmulatorState, account_id: str, tunnel_id: str, body: Json, path: str) -> Json:
    lookup(state, account_id, tunnel_id, path, live=True)
    config = validate_config(body.get("config", {}))
    previous = state.tunnel_configs.get(tunnel_id)
    state.tunnel_configs[tunnel_id] = {
        "version": (previous["version"] if previous else 0) + 1,
        "config": json.loads(json.dumps(config)),
        "created_at": now_iso(),
    }
    state.touch()
    return get_config(state, account_id, tunnel_id, path)
