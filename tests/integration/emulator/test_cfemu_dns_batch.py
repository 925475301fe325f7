"""The DNS batch endpoint: Cloudflare's order, atomic rollback and the plan's size limit."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import cloudflare
import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.testing import ZONE_ID, RunningEmulator


# The patch carries only the fields it changes; the SDK's batch patch types also require name, type and ttl.
@pytest.mark.cloudflare_contracts_off
async def test_deletes_run_before_posts_so_a_record_can_change_type(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    old = await acf.dns.records.create(zone_id=ZONE_ID, name="svc", type="A", content="192.0.2.1", ttl=1)
    keep = await acf.dns.records.create(zone_id=ZONE_ID, name="keep", type="TXT", content="x", ttl=1, comment="c1")
    assert old is not None and keep is not None
    result = await acf.dns.records.batch(
        zone_id=ZONE_ID,
        deletes=[{"id": old.id}],
        patches=[cast(Any, {"id": keep.id, "comment": "c2"})],
        posts=[{"name": "svc", "type": "CNAME", "content": "t.cfargotunnel.com", "ttl": 1, "proxied": True}],
    )
    assert result is not None
    assert [r.id for r in result.deletes or []] == [old.id]  # deletes come back as the removed records
    assert [r.comment for r in result.patches or []] == ["c2"]
    assert [(r.name, r.type) for r in result.posts or []] == [("svc.example.com", "CNAME")]
    stored = {(r["name"], r["type"]) for r in cfemu.emulator.state.dns_records[ZONE_ID].values()}
    assert stored == {("svc.example.com", "CNAME"), ("keep.example.com", "TXT")}
    assert cfemu.emulator.count("POST /zones/{zone_id}/dns_records/batch") == 1


async def test_a_failing_operation_rolls_back_the_whole_batch(
    cfemu: RunningEmulator, scf: cloudflare.Cloudflare
) -> None:
    a = await asyncio.to_thread(scf.dns.records.create, zone_id=ZONE_ID, name="a", type="A", content="192.0.2.1", ttl=1)
    assert a is not None
    before = cfemu.emulator.dump()["dns_records"]

    def doomed() -> Any:
        return scf.dns.records.batch(
            zone_id=ZONE_ID,
            deletes=[{"id": a.id}],
            posts=[
                {"name": "new1", "type": "A", "content": "192.0.2.2", "ttl": 1},
                {"name": "new2", "type": "A", "content": "192.0.2.3", "ttl": 1},
                {"name": "new2", "type": "CNAME", "content": "t.example.net", "ttl": 1},
            ],
        )

    with pytest.raises(cloudflare.BadRequestError) as caught:
        await asyncio.to_thread(doomed)
    body: Any = caught.value.body
    assert body["errors"][0]["code"] == 81053
    assert "posts[2]" in body["errors"][0]["message"]
    assert cfemu.emulator.dump()["dns_records"] == before, "a failed batch must leave the zone untouched"
    names = await asyncio.to_thread(lambda: [r.name for r in scf.dns.records.list(zone_id=ZONE_ID)])
    assert names == ["a.example.com"]


async def test_unknown_id_in_a_batch_fails_it(acf: cloudflare.AsyncCloudflare) -> None:
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.batch(zone_id=ZONE_ID, deletes=[{"id": "f" * 32}])
    body: Any = caught.value.body
    assert body["errors"][0]["code"] == 81044


async def test_batch_larger_than_the_plan_allows_is_rejected(emulator_factory: Any) -> None:
    running: RunningEmulator = await emulator_factory()
    posts: list[Any] = [{"name": f"n{i}", "type": "A", "content": "192.0.2.1", "ttl": 1} for i in range(201)]
    async with running.async_client() as acf:
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await acf.dns.records.batch(zone_id=ZONE_ID, posts=posts)
        assert "at most 200" in str(caught.value)
        running.emulator.configure(batch_limit=500)
        result = await acf.dns.records.batch(zone_id=ZONE_ID, posts=posts)
    assert result is not None and len(result.posts or []) == 201


async def test_batch_limit_follows_the_zone_plan(emulator_factory: Any) -> None:
    running: RunningEmulator = await emulator_factory(EmulatorConfig())
    running.emulator.seed({"zones": [{"id": "e" * 32, "name": "pro.test", "plan": "pro"}]})
    posts: list[Any] = [{"name": f"n{i}", "type": "TXT", "content": "v", "ttl": 1} for i in range(300)]
    async with running.async_client() as acf:
        result = await acf.dns.records.batch(zone_id="e" * 32, posts=posts)
    assert result is not None and len(result.posts or []) == 300


@pytest.mark.parametrize(
    "bad_name",
    ["bad_na!me.example.com", "a..b.example.com", "-lead.example.com", "a.*.example.com", "pwn.victim.test"],
)
async def test_one_invalid_name_refuses_the_whole_batch_with_cloudflares_9000(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare, bad_name: str
) -> None:
    posts: list[Any] = [
        {"name": "good1", "type": "CNAME", "content": "t.cfargotunnel.com", "ttl": 1, "proxied": True},
        {"name": bad_name, "type": "CNAME", "content": "t.cfargotunnel.com", "ttl": 1, "proxied": True},
    ]
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.batch(zone_id=ZONE_ID, posts=posts)
    body: Any = caught.value.body
    assert body["errors"][0]["code"] == 9000 and "posts[1]" in body["errors"][0]["message"]
    assert cfemu.emulator.state.records_of(ZONE_ID) == {}, "the valid record of a refused batch is not written"


async def test_a_create_beyond_the_record_quota_refuses_the_batch_with_81045(emulator_factory: Any) -> None:
    running: RunningEmulator = await emulator_factory(EmulatorConfig(record_quota=1))
    posts: list[Any] = [{"name": f"n{i}", "type": "A", "content": "192.0.2.1", "ttl": 1} for i in range(2)]
    async with running.async_client() as acf:
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await acf.dns.records.batch(zone_id=ZONE_ID, posts=posts)
        body: Any = caught.value.body
        assert body["errors"][0]["code"] == 81045 and "posts[1]" in body["errors"][0]["message"]
        assert running.emulator.state.records_of(ZONE_ID) == {}
        result = await acf.dns.records.batch(zone_id=ZONE_ID, posts=posts[:1])
    assert result is not None and len(result.posts or []) == 1


# The patch carries only the fields it changes; the SDK's batch patch types also require name, type and ttl.
@pytest.mark.cloudflare_contracts_off
async def test_a_renaming_patch_frees_its_old_name_and_is_checked_under_its_new_one(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    moved = await acf.dns.records.create(zone_id=ZONE_ID, name="old", type="A", content="192.0.2.1", ttl=1)
    taken = await acf.dns.records.create(zone_id=ZONE_ID, name="taken", type="CNAME", content="t.example.net", ttl=1)
    assert moved is not None and taken is not None
    cname: Any = {"name": "old", "type": "CNAME", "content": "t.cfargotunnel.com", "ttl": 1, "proxied": True}
    result = await acf.dns.records.batch(
        zone_id=ZONE_ID, patches=[cast(Any, {"id": moved.id, "name": "new"})], posts=[cname]
    )
    assert result is not None and [r.name for r in result.posts or []] == ["old.example.com"], (
        "a CNAME may take the name a patch of the same batch moved a record away from"
    )
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.batch(zone_id=ZONE_ID, patches=[cast(Any, {"id": moved.id, "name": "taken"})])
    body: Any = caught.value.body
    assert body["errors"][0]["code"] == 81054 and "patches[0]" in body["errors"][0]["message"], (
        "an A record moved onto a CNAME's name is refused as Cloudflare refuses it"
    )
    stored = sorted((r["name"], r["type"]) for r in cfemu.emulator.state.dns_records[ZONE_ID].values())
    assert stored == [("new.example.com", "A"), ("old.example.com", "CNAME"), ("taken.example.com", "CNAME")]
