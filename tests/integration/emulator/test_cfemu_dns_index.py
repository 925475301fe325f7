"""What the emulator's indexes must never change: a refused batch leaves the names as they were, a rename frees
its old name (records and tunnels), a record changed outside the API is seen, and a batch stores its writes in
the order Cloudflare lists them."""

from __future__ import annotations

from typing import Any, cast

import cloudflare
import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ACCOUNT_ID, ZONE_ID, RunningEmulator

CNAME: Any = {"type": "CNAME", "content": "t.cfargotunnel.com", "ttl": 1, "proxied": True}


def _code(error: cloudflare.APIStatusError) -> int:
    body: Any = error.body
    return int(body["errors"][0]["code"])


async def test_a_refused_batch_leaves_every_name_as_it_was(acf: cloudflare.AsyncCloudflare) -> None:
    held = await acf.dns.records.create(zone_id=ZONE_ID, name="held", type="A", content="192.0.2.1", ttl=1)
    assert held is not None
    posts: list[Any] = [
        {**CNAME, "name": "held"},  # allowed once the delete ran: the A record is gone in the batch
        {**CNAME, "name": "fresh"},
        {"name": "bad_na!me", "type": "A", "content": "192.0.2.9", "ttl": 1},
    ]
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.batch(zone_id=ZONE_ID, deletes=[{"id": held.id}], posts=posts)
    assert _code(caught.value) == 9000
    with pytest.raises(cloudflare.BadRequestError) as conflict:
        await acf.dns.records.create(zone_id=ZONE_ID, name="held", **CNAME)
    assert _code(conflict.value) == 81053, "the A record the refused batch deleted still holds its name"
    fresh = await acf.dns.records.create(zone_id=ZONE_ID, name="fresh", type="A", content="192.0.2.2", ttl=1)
    assert fresh is not None, "the CNAME the refused batch posted holds no name"


async def test_a_renamed_record_frees_its_old_name_and_holds_its_new_one(acf: cloudflare.AsyncCloudflare) -> None:
    moved = await acf.dns.records.create(zone_id=ZONE_ID, name="before", **CNAME)
    assert moved is not None
    await acf.dns.records.edit(moved.id, zone_id=ZONE_ID, name="after", type="CNAME", ttl=1)
    assert await acf.dns.records.create(zone_id=ZONE_ID, name="before", type="A", content="192.0.2.1", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.create(zone_id=ZONE_ID, name="after", type="A", content="192.0.2.1", ttl=1)
    assert _code(caught.value) == 81054


async def test_a_deleted_record_frees_its_name(acf: cloudflare.AsyncCloudflare) -> None:
    gone = await acf.dns.records.create(zone_id=ZONE_ID, name="gone", **CNAME)
    assert gone is not None
    await acf.dns.records.delete(gone.id, zone_id=ZONE_ID)
    assert await acf.dns.records.create(zone_id=ZONE_ID, name="gone", type="A", content="192.0.2.1", ttl=1)


async def test_records_stored_or_removed_outside_the_api_count_for_conflicts(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    records = cfemu.emulator.state.records_of(ZONE_ID)
    records["d" * 32] = {"id": "d" * 32, "name": "planted.example.com", "type": "CNAME", "content": "x.example.net"}
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.batch(
            zone_id=ZONE_ID, posts=[{"name": "planted", "type": "A", "content": "192.0.2.1", "ttl": 1}]
        )
    assert _code(caught.value) == 81054
    del records["d" * 32]
    result = await acf.dns.records.batch(
        zone_id=ZONE_ID, posts=[{"name": "planted", "type": "A", "content": "192.0.2.1", "ttl": 1}]
    )
    assert result is not None and len(result.posts or []) == 1


# The patch carries only the fields it changes; the SDK's batch patch types also require name, type and ttl.
@pytest.mark.cloudflare_contracts_off
async def test_a_batch_keeps_changed_records_in_place_and_adds_new_ones_last(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    ids = []
    for name in ("one", "two", "three"):
        created = await acf.dns.records.create(zone_id=ZONE_ID, name=name, type="TXT", content=name, ttl=1)
        assert created is not None
        ids.append(created.id)
    await acf.dns.records.batch(
        zone_id=ZONE_ID,
        deletes=[{"id": ids[0]}],
        patches=[cast(Any, {"id": ids[1], "name": "two-b"})],
        posts=[{"name": name, "type": "TXT", "content": name, "ttl": 1} for name in ("four", "five")],
    )
    stored = [r["name"] for r in cfemu.emulator.state.records_of(ZONE_ID).values()]
    assert stored == ["two-b.example.com", "three.example.com", "four.example.com", "five.example.com"]


async def test_a_batch_counts_its_deletes_against_the_record_quota(emulator_factory: Any) -> None:
    running: RunningEmulator = await emulator_factory(EmulatorConfig(record_quota=1))
    async with running.async_client() as acf:
        first = await acf.dns.records.create(zone_id=ZONE_ID, name="first", type="A", content="192.0.2.1", ttl=1)
        assert first is not None
        post: Any = {"name": "second", "type": "A", "content": "192.0.2.2", "ttl": 1}
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await acf.dns.records.batch(zone_id=ZONE_ID, posts=[post])
        assert _code(caught.value) == 81045
        result = await acf.dns.records.batch(zone_id=ZONE_ID, deletes=[{"id": first.id}], posts=[post])
    assert result is not None and [r.name for r in result.posts or []] == ["second.example.com"]


async def test_a_renamed_tunnel_frees_its_old_name_and_holds_its_new_one(acf: cloudflare.AsyncCloudflare) -> None:
    tunnels = acf.zero_trust.tunnels.cloudflared
    first = await tunnels.create(account_id=ACCOUNT_ID, name="edge-a", config_src="cloudflare")
    assert first.id is not None
    await tunnels.edit(first.id, account_id=ACCOUNT_ID, name="edge-a")  # its own name is not taken
    await tunnels.edit(first.id, account_id=ACCOUNT_ID, name="edge-b")
    again = await tunnels.create(account_id=ACCOUNT_ID, name="edge-a", config_src="cloudflare")
    assert again.id is not None and again.id != first.id
    with pytest.raises(cloudflare.ConflictError) as created:
        await tunnels.create(account_id=ACCOUNT_ID, name="edge-b", config_src="cloudflare")
    assert _code(created.value) == 1013
    with pytest.raises(cloudflare.ConflictError) as renamed:
        await tunnels.edit(again.id, account_id=ACCOUNT_ID, name="edge-b")
    assert _code(renamed.value) == 1013


async def test_a_tunnel_name_is_unique_per_account_only(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    other = "c" * 32
    cfemu.emulator.seed({"accounts": [{"id": other, "name": "other"}]})
    tunnels = acf.zero_trust.tunnels.cloudflared
    await tunnels.create(account_id=ACCOUNT_ID, name="shared", config_src="cloudflare")
    elsewhere = await tunnels.create(account_id=other, name="shared", config_src="cloudflare")
    assert elsewhere.id is not None
