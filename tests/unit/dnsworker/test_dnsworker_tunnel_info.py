"""Cloudflare's tunnel and connections answers as the tunnels read model keeps them (pure): the connector's oldest
open connection is its "since", a stopped connector Cloudflare still tracks is marked, and an answer missing fields
or holding the wrong types is kept as far as it goes instead of failing the listing."""

from __future__ import annotations

from datetime import UTC, datetime

from flareport_dns_worker.tunnel_list import connector, tunnel_info

CLIENT = {
    "id": "c-1",
    "arch": "linux_arm64",
    "version": "2025.9.0",
    "run_at": "2026-12-03T20:00:00Z",
    "conns": [
        {"colo_name": "fra08", "opened_at": "2026-12-03T21:00:00.123456789Z", "origin_ip": "198.51.100.4"},
        {"colo_name": "ams01", "opened_at": "2026-12-03T20:00:01Z", "origin_ip": "198.51.100.4"},
        {"colo_name": "fra08", "opened_at": "2026-12-03T20:30:00Z", "origin_ip": "198.51.100.4"},
    ],
}


def test_a_connector_is_its_version_origin_ip_and_oldest_connection() -> None:
    found = connector(CLIENT)
    assert (found.id, found.version, found.arch, found.origin_ip) == ("c-1", "2025.9.0", "linux_arm64", "198.51.100.4")
    assert found.opened_at == datetime(2026, 12, 3, 20, 0, 1, tzinfo=UTC), "since its oldest open connection"
    assert found.run_at == datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    assert (found.connections, found.colos, found.pending_reconnect) == (3, ("ams01", "fra08"), False)


def test_a_stopped_connector_is_marked_and_its_version_comes_from_its_connections() -> None:
    stopped = {"id": "c-2", "conns": [{"client_version": "2024.1.0", "is_pending_reconnect": True}] * 2}
    found = connector(stopped)
    assert found.pending_reconnect and found.version == "2024.1.0" and found.opened_at is None
    assert not connector({"id": "c-3", "conns": []}).pending_reconnect, "no connections is not reconnecting"


def test_odd_answers_are_kept_as_far_as_they_go() -> None:
    odd = connector({"id": 7, "conns": ["x", {"opened_at": "yesterday", "origin_ip": None}], "run_at": 5})
    assert (odd.id, odd.connections, odd.opened_at, odd.run_at, odd.origin_ip) == ("7", 1, None, None, "")
    tunnel = tunnel_info({"id": "t-1", "name": "web", "created_at": None}, [CLIENT, "not a client"])  # type: ignore[list-item]
    assert (tunnel.id, tunnel.name, tunnel.status, tunnel.created_at) == ("t-1", "web", "inactive", None)
    assert [c.id for c in tunnel.connectors] == ["c-1"]
