"""What one stolen agent key (or the agent-key secret) cannot do through the API (docs/security.md, "Threats from a
stolen agent key"): keep receiving commands after its revocation, hold more than its share of long-polls, find a
delivered secret left in Redis, or mint working keys while Redis holds its data.

Each attack is made as an attacker would, with hand-made protocol requests to the API, against the session's real
redis-server; the rolled-key flow runs a real reconciler replica next to the API.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_api.keyproof import KeyMinter
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages import IntentMessage, KeyRolled, RotateKey, StartTunnel
from flareport_common.parcels import stash
from flareport_common.settings import AgentQuotas, ApiSettings, derived_agent_key_secret
from flareport_common.streams.codec import encode
from fptest.api_helpers import MASTER, stream_messages
from fptest.reconciler_harness import Replicas, reconciler_settings
from fptest.redis_scan import keys_holding
from fptest.waiting import wait_for

from .conftest import Api
from .test_api_key_recovery import heartbeat, lose_everything

TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0-stolen-key-test"


@pytest.fixture
def sync_redis(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


async def serve(settings: ApiSettings, keys: Keys, client_redis: aioredis.Redis) -> Api:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return Api(client=client, keys=keys, redis=client_redis)


@pytest.fixture
async def api_limit_1(api_settings: ApiSettings, keys: Keys, redis: aioredis.Redis) -> AsyncIterator[Api]:
    api = await serve(replace(api_settings, quotas=AgentQuotas(longpolls=1)), keys, redis)
    try:
        yield api
    finally:
        await api.client.close()


async def poll(api: Api, key: str, agent_id: str, wait: float = 0.0) -> tuple[int, Any, Any]:
    response = await api.client.get(
        f"/api/v1/agents/{agent_id}/commands", params={"wait": str(wait)}, headers=api.bearer(key)
    )
    return response.status, await response.json(), response.headers


async def ack(api: Api, key: str, agent_id: str, command_id: str) -> Any:
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/commands/{command_id}/ack", json={"ok": True}, headers=api.bearer(key)
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def open_polls(api: Api, agent_id: str, count: int) -> None:
    """Until exactly ``count`` long-polls of the agent hold a slot (they are waiting)."""

    async def reached() -> bool:
        return int(await api.redis.zcard(api.keys.agent_longpolls(agent_id))) == count

    await wait_for(reached, timeout=15, what=f"{count} open long-polls of {agent_id}")


async def send_start_tunnel(api: Api, agent_id: str) -> None:
    """What the reconciler does with a tunnel token: aside under the agent's key, a reference in the command."""
    ref = await stash(api.redis, api.keys, agent_id, TOKEN)
    await api.redis.xadd(api.keys.agent_commands(agent_id), encode(StartTunnel(tunnel_id="t-1", secret_ref=ref)))  # type: ignore[arg-type]
    await api.redis.publish(api.keys.command_notifications, agent_id)


async def key_id_of(api: Api, agent_id: str) -> str:
    listed = (await (await api.client.get("/api/v1/keys", headers=api.admin)).json())["keys"]
    return str(next(k["key_id"] for k in listed if k["agent_id"] == agent_id))


# ---- a long-poll re-checks its key ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["revoke the key", "remove the agent"])
async def test_a_poll_waiting_when_its_key_is_revoked_gets_401_and_never_the_token(api: Api, how: str) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    waiting = asyncio.create_task(poll(api, key, agent_id, wait=20))
    await open_polls(api, agent_id, 1)
    if how == "revoke the key":
        response = await api.client.post(f"/api/v1/keys/{await key_id_of(api, agent_id)}/revoke", headers=api.admin)
    else:
        response = await api.client.delete(f"/api/v1/agents/{agent_id}", params={"force": "true"}, headers=api.admin)
    assert response.status < 300, await response.text()
    await send_start_tunnel(api, agent_id)  # a token arrives while the revoked key's poll waits

    status, body, _ = await waiting
    assert (status, body["error"]["code"]) == (401, "key_revoked"), body
    assert TOKEN not in str(body)


# ---- concurrent long-polls per agent -------------------------------------------------------------------------


async def test_a_third_concurrent_poll_is_refused_naming_longpolls(api: Api) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    # Long enough to be open while the third is refused; one of them reads the command below and the other,
    # finding nothing, answers empty at its deadline.
    waiting = [asyncio.create_task(poll(api, key, agent_id, wait=8)) for _ in range(2)]
    await open_polls(api, agent_id, 2)

    status, body, headers = await poll(api, key, agent_id, wait=20)
    assert (status, body["error"]["code"], body["error"]["field"]) == (429, "quota_exceeded", "longpolls"), body
    assert int(headers["Retry-After"]) >= 1
    assert await api.redis.hexists(api.keys.agent_quota_refusals(agent_id), "longpolls"), "shown on its page"

    await send_start_tunnel(api, agent_id)  # answers one waiting poll at once
    answers = await asyncio.gather(*waiting)
    assert [a[0] for a in answers] == [200, 200]
    await open_polls(api, agent_id, 0)
    assert (await poll(api, key, agent_id))[0] == 200, "slots are given back when the polls answer"


async def test_a_dropped_poll_gives_its_slot_back_so_the_agent_reconnects(api_limit_1: Api) -> None:
    api = api_limit_1
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    url = api.client.make_url(f"/api/v1/agents/{agent_id}/commands")
    async with aiohttp.ClientSession() as session:
        dropped = asyncio.create_task(session.get(url, params={"wait": "25"}, headers=api.bearer(key)))
        await open_polls(api, agent_id, 1)
        dropped.cancel()  # the connection goes away mid-poll, as on a network failure
    await open_polls(api, agent_id, 0)  # well before the dropped poll's 25 s wait would end
    assert (await poll(api, key, agent_id))[0] == 200


async def test_a_slot_a_crashed_replica_never_released_lapses(api_limit_1: Api) -> None:
    api = api_limit_1
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await api.redis.zadd(api.keys.agent_longpolls(agent_id), {"crashed-replica-poll": 1})  # lapsed long ago
    assert (await poll(api, key, agent_id))[0] == 200


# ---- secrets are delivered once ------------------------------------------------------------------------------


async def test_a_tunnel_token_is_in_no_redis_key_after_the_ack(api: Api, prefix: str, sync_redis: redis.Redis) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await send_start_tunnel(api, agent_id)
    assert keys_holding(sync_redis, TOKEN, f"{prefix}*"), "waiting for its agent"

    [delivered] = (await poll(api, key, agent_id))[1]["commands"]
    assert (delivered["command"]["token"], delivered["command"]["secret_ref"]) == (TOKEN, None)
    assert TOKEN not in str(await (await api.client.get(f"/api/v1/agents/{agent_id}", headers=api.admin)).text())
    await ack(api, key, agent_id, delivered["command_id"])

    assert keys_holding(sync_redis, TOKEN, f"{prefix}*") == []
    await api.register(key)  # a restarted agent gets again what it had not acknowledged: nothing
    assert (await poll(api, key, agent_id))[1]["commands"] == []


async def test_a_rolled_key_is_in_no_redis_key_after_the_ack(
    api: Api, api_settings: ApiSettings, prefix: str, sync_redis: redis.Redis
) -> None:
    old = await api.new_key()
    agent_id = (await api.register(old))["agent_id"]
    reconciler = await Replicas(reconciler_settings(api_settings.common.redis_url, prefix), count=1).start()
    try:
        rolled = await api.client.post(f"/api/v1/keys/{await key_id_of(api, agent_id)}/roll", headers=api.admin)
        assert rolled.status == 200, await rolled.text()
        assert "fpk_" not in await rolled.text(), "the admin's answer names the new key, it does not carry it"

        async def rotate() -> Any:
            return next(iter((await poll(api, old, agent_id, wait=5))[1]["commands"]), None)

        delivered = await wait_for(rotate, what="the rotate_key command")
    finally:
        await reconciler.stop()
    new_key = delivered["command"]["new_key"]
    assert delivered["command"]["type"] == "rotate_key" and new_key.startswith("fpk_")
    await ack(api, old, agent_id, delivered["command_id"])

    assert keys_holding(sync_redis, new_key, f"{prefix}*") == [], "only its hash is kept"
    intents = [i for i in await stream_messages(api.redis, api.keys.intents, IntentMessage) if isinstance(i, KeyRolled)]
    assert [i.new_key for i in intents] == [""]
    assert (await heartbeat(api, new_key, agent_id))[0] == 200, "and the agent uses it"


async def test_a_command_is_never_given_another_agents_secret(api: Api) -> None:
    key, other = await api.new_key("host-1"), await api.new_key("host-2")
    agent_id = (await api.register(key))["agent_id"]
    victim = (await api.register(other, "host two"))["agent_id"]
    ref = await stash(api.redis, api.keys, victim, "victims-rolled-key")
    await api.redis.xadd(api.keys.agent_commands(agent_id), encode(RotateKey(key_id="k", secret_ref=ref)))  # type: ignore[arg-type]
    assert (await poll(api, key, agent_id))[1]["commands"] == [], "a reference resolves only for its own agent"


# ---- key recovery only after a real loss ---------------------------------------------------------------------


def minter() -> KeyMinter:
    return KeyMinter(derived_agent_key_secret(MASTER))


async def test_a_key_minted_with_the_secret_while_redis_holds_its_data_is_refused(api: Api) -> None:
    victim_key = await api.new_key()
    victim = (await api.register(victim_key))["agent_id"]
    for_victim, _ = minter().mint(victim)  # names the victim's agent inside its proof
    unbound, _ = minter().mint()

    status, body = await heartbeat(api, for_victim, victim)
    assert (status, body["error"]["code"]) == (401, "unknown_key"), body
    response = await api.client.post("/api/v1/agents/register", json={"display_name": "x"}, headers=api.bearer(unbound))
    assert response.status == 401, await response.text()

    assert await api.redis.hlen(api.keys.api_keys_index) == 1, "nothing restored"
    assert await api.redis.smembers(api.keys.agent_api_keys(victim)) == {(await key_id_of(api, victim)).encode()}
    assert await api.redis.get(api.keys.keys_recovered_at) is None, "no recovery hold for the whole system"


async def test_the_secret_and_a_key_id_do_not_make_the_key(api: Api) -> None:
    """Key ids are no secret (keys page, logs, FLAREPORT_REVOKED_AGENT_KEYS): with the agent-key secret they made
    the agent's very key when a key was a function of its id."""
    victim_key = await api.new_key()
    victim = (await api.register(victim_key))["agent_id"]
    hex_id = (await key_id_of(api, victim)).removeprefix("key_")
    message = b"flareport agent key\x00" + f"{hex_id}\x00".encode()
    digest = hmac.new(derived_agent_key_secret(MASTER).encode(), message, hashlib.sha256).digest()
    computed = f"fpk_{hex_id}." + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    status, body = await heartbeat(api, computed, victim)
    assert (status, body["error"]["code"]) == (401, "unknown_key"), body


async def test_after_a_real_loss_a_key_for_an_agent_that_came_back_is_refused(api: Api, prefix: str) -> None:
    victim_key = await api.new_key()
    victim = (await api.register(victim_key))["agent_id"]
    await lose_everything(api.redis, prefix)
    assert (await heartbeat(api, victim_key, victim))[0] == 200, "the real agent is restored"

    minted, _ = minter().mint(victim)
    status, body = await heartbeat(api, minted, victim)
    assert (status, body["error"]["code"]) == (401, "unknown_key"), "its agent has a key: it lost nothing"


async def test_after_a_real_loss_a_second_key_with_a_returned_keys_id_is_refused(
    api: Api, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids are no secret, and an unbound key's agent id is derived from its key id: a key minted with the id of a key
    that came back would be bound to that key's agent."""
    victim_key = await api.new_key()
    victim = (await api.register(victim_key))["agent_id"]
    hex_id = (await key_id_of(api, victim)).removeprefix("key_")
    await lose_everything(api.redis, prefix)
    assert (await heartbeat(api, victim_key, victim))[0] == 200, "the real agent is restored"

    monkeypatch.setattr(secrets, "token_hex", lambda n: hex_id)
    minted, minted_id = minter().mint()
    assert minted_id == f"key_{hex_id}" and minted != victim_key
    status, body = await heartbeat(api, minted, victim)
    assert (status, body["error"]["code"]) == (401, "unknown_key"), body
    assert (await heartbeat(api, victim_key, victim))[0] == 200, "the real agent keeps its key"


async def test_restores_end_when_the_window_after_the_loss_has_passed(api: Api, prefix: str) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await lose_everything(api.redis, prefix)
    await api.redis.set(api.keys.data_epoch, "open:1000.000")  # a loss noticed long ago
    assert (await heartbeat(api, key, agent_id))[0] == 401


async def test_a_data_set_with_keys_but_no_marker_is_sealed(api: Api) -> None:
    """A Redis written by a release without the marker: its keys are there, so it lost nothing."""
    key = await api.new_key()
    await api.register(key)
    await api.redis.delete(api.keys.data_epoch)
    minted, _ = minter().mint()
    response = await api.client.post("/api/v1/agents/register", json={"display_name": "x"}, headers=api.bearer(minted))
    assert response.status == 401
    marker: Any = await api.redis.get(api.keys.data_epoch)
    assert marker.startswith(b"sealed:")


async def test_restores_are_rate_limited(api: Api, prefix: str) -> None:
    key = await api.new_key()
    agent_id = (await api.register(key))["agent_id"]
    await lose_everything(api.redis, prefix)
    now = int(time.time())
    for minute in (now // 60, now // 60 + 1):  # this minute and the next are spent already
        await api.redis.set(api.keys.keys_restored(minute), 10_000, ex=180)
    response = await api.client.post(
        f"/api/v1/agents/{agent_id}/heartbeat", json={"docker_reachable": True}, headers=api.bearer(key)
    )
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (429, "restore_rate_limited"), body
    assert int(response.headers["Retry-After"]) >= 1
