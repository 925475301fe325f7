"""The tunnels read model: the dns-worker lists the account's tunnels with their connectors (version, origin IP,
since when) on a ``refresh_tunnels`` job, and a listing Cloudflare refuses keeps the last tunnels, marked stale."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common import tunnelview
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import RefreshTunnels
from flareport_dns_worker.tunnel_list import CONNECTIONS, TUNNELS
from fptest.dnsworker_harness import drain, send, service, settings_for

from .conftest import TUNNEL_ID

LIST_CONNECTIONS = "GET " + CONNECTIONS


async def test_refresh_job_lists_tunnels_with_their_connectors_and_a_refused_listing_keeps_them_as_stale(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # A tunnel that never connected and one whose only connector stopped: listed, their connections not asked for.
    emu.emulator.seed({"tunnels": [{"name": n, "config_src": "cloudflare"} for n in ("idle-tunnel", "down-tunnel")]})
    [down_id] = [t["id"] for t in emu.emulator.state.tunnels.values() if t["name"] == "down-tunnel"]
    async with emu.control() as control:
        await control.connect_tunnel(down_id)
        await control.disconnect_tunnel(down_id)
        running = await control.connect_tunnel(TUNNEL_ID, connections=4)
        stopped = await control.connect_tunnel(TUNNEL_ID, connections=2)
        await control.disconnect_tunnel(TUNNEL_ID, client_id=stopped)
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [RefreshTunnels()])
        assert await drain(svc) == 1
        document = tunnelview.decode(await redis.get(keys.cf_tunnels))
        assert document.checked_at is not None and document.error is None
        by_name = {t.name: t for t in document.tunnels}
        assert sorted(by_name) == ["dashboard-tunnel", "down-tunnel", "idle-tunnel"]
        assert by_name["idle-tunnel"].status == "inactive" and by_name["idle-tunnel"].connectors == ()
        assert by_name["down-tunnel"].status == "down" and by_name["down-tunnel"].connectors == ()
        dashboard = by_name["dashboard-tunnel"]
        assert dashboard.id == TUNNEL_ID and dashboard.status == "healthy" and dashboard.remote_config
        connectors = {c.id: c for c in dashboard.connectors}
        assert set(connectors) == {running, stopped}, "both connectors, the stopped one while Cloudflare tracks it"
        live = connectors[running]
        assert (live.version, live.arch, live.origin_ip, live.connections) == (
            "2024.12.2",
            "linux_amd64",
            "192.0.2.10",
            4,
        )
        assert live.opened_at is not None and not live.pending_reconnect and len(live.colos) == 4
        assert connectors[stopped].pending_reconnect, "a stopped connector's lingering connections are marked"
        assert svc.api.calls[LIST_CONNECTIONS] == 1, "connections asked only for the connected tunnel"

        # Open pages refresh on a changed listing, not on one that only got newer.
        version = await redis.get(keys.readmodel_version)
        assert version is not None, "the first listing raised the read-model counter"
        again = await svc.tunnel_list.refresh()
        assert again.tunnels == document.tunnels and again.checked_at != document.checked_at
        assert await redis.get(keys.readmodel_version) == version
        document = again

        # Asked again at once (a button pressed twice): answered from the listing just made, no call.
        await send(redis, keys, [RefreshTunnels()])
        await drain(svc)
        assert svc.api.calls["GET " + TUNNELS] == 2

        # Cloudflare refuses the next listing: the tunnels stay, with the reason and when it failed.
        emu.emulator.set_faults([{"endpoint": "GET " + TUNNELS, "sequence": [403]}])
        stale = await svc.tunnel_list.refresh()
        assert stale.tunnels == document.tunnels and stale.checked_at == document.checked_at
        assert stale.error is not None and "Cloudflare Tunnel" in stale.error and stale.failed_at is not None
        assert tunnelview.decode(await redis.get(keys.cf_tunnels)) == stale
        assert await redis.get(keys.readmodel_version) != version, "the failure shows on open pages"
    finally:
        await svc.close()
