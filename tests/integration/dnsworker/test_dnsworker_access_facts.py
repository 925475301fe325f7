"""The Access facts for ``authenticated-default`` (the account owner's email, the One-time PIN login method): found
in the Cloudflare account by the dns-worker, kept in Redis, a missing one deleted, a change announced to the
reconciler with a reconcile intent.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import msgspec
import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.intents import IntentMessage, ReconcileRequested
from flareport_common.streams.codec import FIELD
from flareport_dns_worker.access_facts import IDENTITY_PROVIDERS, MEMBERS
from fptest.dnsworker_harness import process_env, service, settings_for
from fptest.waiting import wait_for

LIST_MEMBERS = "GET " + MEMBERS
LIST_IDPS = "GET " + IDENTITY_PROVIDERS
_intents = msgspec.json.Decoder(IntentMessage)


async def facts(redis: aioredis.Redis, keys: Keys) -> dict[str, str]:
    raw: dict[Any, Any] = await redis.hgetall(keys.access_facts)
    return {k.decode(): v.decode() for k, v in raw.items() if k != b"checked_at"}


async def intents(redis: aioredis.Redis, keys: Keys) -> list[IntentMessage]:
    entries: Any = await redis.xrange(keys.intents)
    return [_intents.decode(fields[FIELD]) for _, fields in entries]


def otp_id(emu: RunningEmulator) -> str:
    [otp] = [p for p in emu.emulator.state.identity_providers.values() if p["type"] == "onetimepin"]
    return str(otp["id"])


async def test_facts_are_found_stored_and_a_removed_login_method_is_deleted_with_a_reconcile_intent(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # Another member comes first in the list, without a privileged role: the owner (analytics read) is chosen.
    emu.emulator.seed({"account_members": [{"email": "viewer@example.com", "roles": [{"name": "Billing"}]}]})
    emu.emulator.state.account_members[emu.account_id] = dict(
        reversed(list(emu.emulator.state.account_members[emu.account_id].items()))
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await svc.access_facts.refresh()
        assert await facts(redis, keys) == {"owner_email": "owner@example.com", "otp_idp_id": otp_id(emu)}
        [first] = await intents(redis, keys)
        assert isinstance(first, ReconcileRequested) and (first.scope, first.verify) == ("all", False)

        await svc.access_facts.refresh()
        assert len(await intents(redis, keys)) == 1, "nothing changed: no intent"

        # The One-time PIN login method is removed in the dashboard: the next refresh deletes the fact.
        client = emu.async_client()
        try:
            await client.delete(f"/accounts/{emu.account_id}/access/identity_providers/{otp_id(emu)}", cast_to=object)
        finally:
            await client.close()
        await svc.access_facts.refresh()
        assert await facts(redis, keys) == {"owner_email": "owner@example.com"}, "never a stale id"
        second = (await intents(redis, keys))[-1]
        assert isinstance(second, ReconcileRequested) and second.id != first.id and not second.verify
        assert second.extra["changed"] == ["otp_idp_id"]
    finally:
        await svc.close()


async def test_a_token_without_the_members_permission_leaves_the_owner_out_and_the_setting_wins(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await svc.access_facts.refresh()
        assert "owner_email" in await facts(redis, keys)
        emu.emulator.add_fault({"endpoint": LIST_MEMBERS, "error_rate": 1.0, "error_status": 403})
        await svc.access_facts.refresh()
        assert "owner_email" not in await facts(redis, keys), "a refusal deletes the fact: never a stale guess"
        assert (await intents(redis, keys))[-1].extra["changed"] == ["owner_email"]  # type: ignore[union-attr]
    finally:
        await svc.close()

    # FLAREPORT_ACCESS_OWNER_EMAIL: the members are not asked at all.
    emu.emulator.clear_requests()
    configured = service(
        settings_for(redis_server.url, prefix, emu, FLAREPORT_ACCESS_OWNER_EMAIL="Boss@Example.com"), redis, "w2"
    )
    try:
        await configured.access_facts.refresh()
        assert (await facts(redis, keys))["owner_email"] == "boss@example.com"
        assert emu.emulator.count(LIST_MEMBERS) == 0 and emu.emulator.count(LIST_IDPS) == 1
    finally:
        await configured.close()


async def test_the_worker_process_finds_the_facts_at_start(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    env = process_env(redis_server.url, prefix, emu)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flareport_cli", "dns-worker", env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:

        async def found() -> dict[str, str] | None:
            known = await facts(redis, keys)
            return known if len(known) == 2 else None

        known = await wait_for(found, timeout=20, what="the worker process to store the Access facts")
        assert known == {"owner_email": "owner@example.com", "otp_idp_id": otp_id(emu)}
        assert [type(i) for i in await intents(redis, keys)] == [ReconcileRequested]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0, "SIGTERM still ends the worker cleanly"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
