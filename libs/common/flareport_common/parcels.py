"""Secrets for one agent (tunnel tokens, rolled keys) kept out of every shared stream.

Whoever makes the secret (the dns-worker for a tunnel token, the API for a rolled key) stores it under
``Keys.agent_secret(agent_id, ref)`` with a TTL and passes only ``ref`` on: the cf-results and intents streams,
the agent's command stream, dead letters and the command history never see the secret itself. The API resolves
the reference in its answer to the owning agent's long-poll, after checking that the asking key is still valid
for that agent, and deletes the secret when the agent acknowledges the command, so a secret is handed out until
it is acknowledged and then no longer exists in Redis (the agent keeps its token on disk for later restarts).

The key of a secret names the agent, so a command in one agent's stream can never resolve another agent's
secret. The TTL is a safety net for a command that is never acknowledged (an agent that never comes back).
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages.base import new_id
from flareport_common.messages.commands import CommandMessage, RotateKey, StartTunnel

# Longer than an agent plausibly stays offline with a command pending; after that the admin re-enrolls or rolls.
SECRET_TTL_SECONDS = 7 * 24 * 3600


async def stash(redis: aioredis.Redis, keys: Keys, agent_id: str, secret: str) -> str:
    """Store ``secret`` for ``agent_id``; returns the reference a message carries instead of it."""
    ref = new_id()
    await redis.set(keys.agent_secret(agent_id, ref), secret, ex=SECRET_TTL_SECONDS)
    return ref


def secret_ref(command: CommandMessage) -> str | None:
    """The reference of the secret a command carries, if it carries one."""
    return command.secret_ref if isinstance(command, StartTunnel | RotateKey) else None


def reveal(command: CommandMessage, secret: str) -> CommandMessage:
    """The command as the agent receives it: the secret in place of its reference."""
    if isinstance(command, StartTunnel):
        return msgspec.structs.replace(command, token=secret, secret_ref=None)
    if isinstance(command, RotateKey):
        return msgspec.structs.replace(command, new_key=secret, secret_ref=None)
    return command
