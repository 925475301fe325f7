"""Agent keys: create, find, revoke, roll.

The API owns key material, so these change the key store directly: a revoked key is refused from its agent's very
next request (keys are never cached). What the agent must do about it goes out as an intent: a rolled key is
delivered by the reconciler as a command, a host left without any valid key has its hostnames released.
"""

from __future__ import annotations

from flareport_api import longpoll, validation
from flareport_api.apierror import ApiError, not_found
from flareport_api.keystore import StoredKey
from flareport_api.schemas import KeyRolledResponse
from flareport_api.state import ApiContext
from flareport_api.usecases import intents
from flareport_common.messages.intents import AgentKeysRevoked, KeyRolled
from flareport_common.onboarding import agent_compose, env_file
from flareport_common.parcels import stash


async def create(ctx: ApiContext, label: str) -> tuple[str, StoredKey]:
    """A new key, unbound until an agent registers with it: (the key itself, shown once; its record)."""
    return await ctx.store.create(validation.text(label, "label"))


def onboarding(master_url: str, key: str, label: str) -> tuple[str, str]:
    """What the new key's host needs: its ``.env`` (URL and key) and a compose file without secrets."""
    return env_file(master_url, key), agent_compose(label)


async def find(ctx: ApiContext, key_id: str) -> StoredKey:
    stored = await ctx.store.get(key_id)
    if stored is None:
        raise not_found("key", key_id)
    return stored


async def revoke(ctx: ApiContext, stored: StoredKey) -> StoredKey:
    """Revoke a key; when it was its agent's last valid key, the agent's hostnames are released (an intent): a
    revoked host must not keep names nobody can update any more, nor block others from them. Returns the key as it
    is now."""
    await ctx.store.revoke(stored)
    if stored.agent_id is not None:
        await longpoll.notify(ctx.redis, ctx.keys, stored.agent_id)  # its waiting polls end now, with 401
        if not any(other.status == "active" for other in await ctx.store.of_agent(stored.agent_id)):
            await intents.send(ctx, AgentKeysRevoked(agent_id=stored.agent_id))
    return await find(ctx, stored.key_id)


async def roll(ctx: ApiContext, stored: StoredKey) -> KeyRolledResponse:
    """Make a new key for the agent of ``stored`` and have it delivered; the old one is revoked once the agent
    acknowledges the new one."""
    if stored.agent_id is None or stored.status != "active":
        raise ApiError(409, "not_rollable", "only an active key bound to an agent can be rolled (nothing to deliver)")
    key, new = await ctx.store.create(stored.label, agent_id=stored.agent_id)
    # The intents stream carries only where the key waits for its agent (flareport_common.parcels).
    ref = await stash(ctx.redis, ctx.keys, stored.agent_id, key)
    accepted = await intents.send(ctx, KeyRolled(agent_id=stored.agent_id, key_id=new.key_id, secret_ref=ref))
    return KeyRolledResponse(agent_id=stored.agent_id, new_key_id=new.key_id, intent_id=accepted.intent_id)
