"""Decommission end to end: the reconciler and the dns-worker against the emulator, with a tunnel whose connector is
still running when the deletion arrives. The agent stays ``decommissioning`` with the reason, then is gone."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages import AgentDecommissioned, AgentEnrolled, AgentRegistered
from flareport_common.readmodel import AgentRecord
from flareport_common.streams import Producer
from fptest.dnsworker_harness import service, settings_for
from fptest.reconciler_harness import Replicas, agent_record, reconciler_settings
from fptest.waiting import wait_for


async def test_decommission_waits_for_the_connections_to_drain_showing_why_then_the_agent_is_gone(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # A stopped connector's connections are tracked far longer than the test: only their cleanup lets the delete in.
    emu.emulator.configure(connection_linger_seconds=3600)
    replicas = await Replicas(reconciler_settings(redis_server.url, prefix), count=1).start()
    svc = service(settings_for(redis_server.url, prefix, emu, CLOUDFLARE_TUNNEL_DELETE_DEADLINE_SECONDS=120), redis)
    running = asyncio.create_task(svc.reading.run())
    try:
        producer = Producer(redis)
        await producer.send(keys.events, AgentRegistered(agent_id="a1", display_name="host a1"))
        await producer.send(keys.intents, AgentEnrolled(agent_id="a1", tunnel_name="tunnel-a1"))

        async def enrolled() -> AgentRecord | None:
            record = await agent_record(redis, keys, "a1")
            return record if record is not None and record.status == "active" and record.tunnel_id else None

        record = await wait_for(enrolled, what="the agent to be enrolled with a tunnel of ours")
        assert record is not None and record.tunnel_id is not None and record.tunnel_created_by_flareport
        tunnel_id = record.tunnel_id
        async with emu.control() as control:
            await control.connect_tunnel(tunnel_id)  # the agent's cloudflared runs

        await producer.send(keys.intents, AgentDecommissioned(agent_id="a1"))

        async def waiting() -> AgentRecord | None:
            record = await agent_record(redis, keys, "a1")
            shown = (
                record is not None
                and record.status == "decommissioning"
                and "active connections" in (record.error or "")
            )
            return record if shown else None

        await wait_for(waiting, what="the agent to show why its tunnel is not deleted yet")
        assert emu.emulator.state.tunnels[tunnel_id]["deleted_at"] is None

        async with emu.control() as control:
            await control.disconnect_tunnel(tunnel_id)  # the agent obeyed stop_tunnel; the connections linger

        async def gone() -> bool:
            record = await agent_record(redis, keys, "a1")
            return record is not None and record.status == "removed"

        await wait_for(gone, timeout=60, what="the agent to be removed once its tunnel is deleted")
        assert emu.emulator.state.tunnels[tunnel_id]["deleted_at"] is not None
    finally:
        svc.reading.stop()
        await asyncio.wait_for(running, timeout=30)
        await svc.close()
        await replicas.stop()
