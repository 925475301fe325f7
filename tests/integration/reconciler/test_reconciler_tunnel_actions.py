"""An admin's tunnel actions reach their executors through the reconciler: a restart or redeploy becomes a
``restart_tunnel`` command on the agent's stream (with the redeploy's image), a refresh a ``refresh_tunnels`` job."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import RestartTunnel
from flareport_common.messages.cfjobs import RefreshTunnels
from flareport_common.messages.intents import TunnelRestartRequested, TunnelsRefreshRequested
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker, Replicas, commands, drained
from fptest.waiting import wait_for


async def test_restart_redeploy_and_refresh_intents_become_a_command_and_a_job(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    producer = Producer(redis)
    image = "cloudflare/cloudflared:2025.9.0"
    await producer.send(keys.intents, TunnelRestartRequested(agent_id="a1", tunnel_id="t1"))
    await producer.send(keys.intents, TunnelRestartRequested(agent_id="a1", tunnel_id="t1", image=image))
    await producer.send(keys.intents, TunnelsRefreshRequested())
    await wait_for(lambda: drained(redis, keys.intents), what="the intents to be handled")
    sent = await commands(redis, keys, "a1")
    assert [type(c) for c in sent] == [RestartTunnel, RestartTunnel], sent
    assert [c.image for c in sent if isinstance(c, RestartTunnel)] == [None, image]
    assert [type(j) for j in await worker.pull()] == [RefreshTunnels]
