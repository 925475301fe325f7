"""DNS records through the official SDK: CRUD, Cloudflare's rules and list filters."""

from __future__ import annotations

import asyncio
from typing import Any

import cloudflare
import pytest

from flareport_cfemu.testing import ZONE_ID, RunningEmulator


def _codes(error: cloudflare.APIStatusError) -> list[int]:
    body: Any = error.body
    return [e["code"] for e in body["errors"]]


async def test_record_lifecycle_with_the_async_client(acf: cloudflare.AsyncCloudflare) -> None:
    created = await acf.dns.records.create(
        zone_id=ZONE_ID, name="app", type="A", content="192.0.2.1", ttl=1, proxied=True, comment="managed-by=flareport"
    )
    assert created is not None
    assert created.name == "app.example.com"
    assert created.proxiable is True and created.proxied is True
    assert created.comment == "managed-by=flareport" and created.comment_modified_on is not None

    patched = await acf.dns.records.edit(
        created.id, zone_id=ZONE_ID, name="app.example.com", type="A", content="192.0.2.2", ttl=1
    )
    assert patched is not None and patched.content == "192.0.2.2"
    assert patched.comment == "managed-by=flareport", "PATCH must keep fields it does not mention"

    replaced = await acf.dns.records.update(
        created.id, zone_id=ZONE_ID, name="app.example.com", type="CNAME", content="Target.Example.NET.", ttl=300
    )
    assert replaced is not None
    assert (replaced.type, replaced.content, replaced.ttl) == ("CNAME", "target.example.net", 300)
    assert replaced.comment is None, "PUT replaces the record, so the omitted comment is gone"

    fetched = await acf.dns.records.get(created.id, zone_id=ZONE_ID)
    assert fetched is not None and fetched.created_on == created.created_on

    deleted = await acf.dns.records.delete(created.id, zone_id=ZONE_ID)
    assert deleted is not None and deleted.id == created.id
    with pytest.raises(cloudflare.NotFoundError) as caught:
        await acf.dns.records.get(created.id, zone_id=ZONE_ID)
    assert _codes(caught.value) == [81044]


async def test_record_lifecycle_with_the_sync_client(scf: cloudflare.Cloudflare) -> None:
    created = await asyncio.to_thread(
        scf.dns.records.create, zone_id=ZONE_ID, name="@", type="TXT", content="v=spf1 -all", ttl=3600
    )
    assert created is not None and created.name == "example.com"
    listed = await asyncio.to_thread(lambda: [r.id for r in scf.dns.records.list(zone_id=ZONE_ID, type="TXT")])
    assert listed == [created.id]
    await asyncio.to_thread(scf.dns.records.delete, created.id, zone_id=ZONE_ID)
    assert await asyncio.to_thread(lambda: list(scf.dns.records.list(zone_id=ZONE_ID))) == []


async def test_cname_next_to_an_a_record_is_the_81053_conflict(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    await acf.dns.records.create(zone_id=ZONE_ID, name="www.example.com", type="A", content="192.0.2.1", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.create(
            zone_id=ZONE_ID, name="www.example.com", type="CNAME", content="tunnel.cfargotunnel.com", ttl=1
        )
    assert _codes(caught.value) == [81053]
    assert len(cfemu.emulator.state.dns_records[ZONE_ID]) == 1, "the rejected CNAME must not be stored"


async def test_a_record_next_to_a_cname_is_81054_and_an_identical_record_is_81058(
    acf: cloudflare.AsyncCloudflare,
) -> None:
    await acf.dns.records.create(zone_id=ZONE_ID, name="alias", type="CNAME", content="target.example.net", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as on_cname:
        await acf.dns.records.create(zone_id=ZONE_ID, name="alias", type="AAAA", content="2001:db8::1", ttl=1)
    assert _codes(on_cname.value) == [81054]
    await acf.dns.records.create(zone_id=ZONE_ID, name="txt", type="TXT", content="hello", ttl=1)
    with pytest.raises(cloudflare.BadRequestError) as identical:
        await acf.dns.records.create(zone_id=ZONE_ID, name="TXT.example.com.", type="TXT", content="hello", ttl=1)
    assert _codes(identical.value) == [81058]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": "www.other.org", "type": "A", "content": "192.0.2.1"}, 9000),
        ({"name": "bad..name", "type": "A", "content": "192.0.2.1"}, 9000),
        ({"name": "x", "type": "A", "content": "not-an-ip"}, 9005),
        ({"name": "x", "type": "AAAA", "content": "192.0.2.1"}, 9006),
        ({"name": "x", "type": "CNAME", "content": "bad host!"}, 9007),
        ({"name": "x", "type": "TXT", "content": "t", "proxied": True}, 9041),
        ({"name": "x", "type": "A", "content": "192.0.2.1", "ttl": 30}, 9021),
        ({"name": "x", "type": "A", "content": "192.0.2.1", "ttl": 86401}, 9021),
        ({"name": "x", "type": "A", "content": "192.0.2.1", "comment": "c" * 101}, 9313),
        # Not a type the SDK's types allow: the emulator's own check answers, not the contract check.
        pytest.param({"name": "x", "type": "BOGUS", "content": "1"}, 9020, marks=pytest.mark.cloudflare_contracts_off),
    ],
)
async def test_invalid_records_are_rejected_with_cloudflares_code(
    acf: cloudflare.AsyncCloudflare, fields: dict[str, Any], code: int
) -> None:
    fields = {"ttl": 1, **fields}
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await acf.dns.records.create(zone_id=ZONE_ID, **fields)
    assert _codes(caught.value) == [code]


async def test_proxied_records_are_always_automatic_ttl(acf: cloudflare.AsyncCloudflare) -> None:
    record = await acf.dns.records.create(
        zone_id=ZONE_ID, name="p", type="A", content="192.0.2.1", ttl=300, proxied=True
    )
    assert record is not None and record.ttl == 1


async def test_pagination_past_one_page_sees_all_250_records(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    cfemu.emulator.seed(
        {
            "dns_records": [
                {"zone_id": ZONE_ID, "name": f"h{i:03}", "type": "A", "content": "192.0.2.1"} for i in range(250)
            ]
        }
    )
    seen = [record.name async for record in acf.dns.records.list(zone_id=ZONE_ID, per_page=100)]
    assert len(seen) == 250 and len(set(seen)) == 250
    # three full-or-partial pages and the empty fourth page that ends the SDK's loop
    assert cfemu.emulator.count("GET /zones/{zone_id}/dns_records") == 4
    first = await acf.dns.records.list(zone_id=ZONE_ID, per_page=100)
    assert first.result_info is not None and first.result_info.per_page == 100


async def test_list_filters_match_cloudflare_semantics(cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare) -> None:
    owner = "managed-by=flareport owner=o1"
    cfemu.emulator.seed(
        {
            "dns_records": [
                {"zone_id": ZONE_ID, "name": "a", "type": "CNAME", "content": "t.example.net", "comment": owner},
                {"zone_id": ZONE_ID, "name": "b", "type": "CNAME", "content": "t.example.net", "tags": ["env:prod"]},
                {"zone_id": ZONE_ID, "name": "c", "type": "A", "content": "192.0.2.9"},
            ]
        }
    )

    async def names(**query: Any) -> list[str]:
        return sorted([r.name async for r in acf.dns.records.list(zone_id=ZONE_ID, **query)])

    assert await names(name={"exact": "A.EXAMPLE.COM"}) == ["a.example.com"]
    assert await names(name={"startswith": "b."}) == ["b.example.com"]
    assert await names(comment={"contains": "owner=o1"}) == ["a.example.com"]
    assert await names(comment={"absent": "true"}) == ["b.example.com", "c.example.com"]
    assert await names(tag={"exact": "env:prod"}) == ["b.example.com"]
    assert await names(tag={"present": "env"}) == ["b.example.com"]
    assert await names(type="CNAME", content={"exact": "t.example.net"}) == ["a.example.com", "b.example.com"]
    assert await names(type="A", comment={"present": "true"}, match="any") == ["a.example.com", "c.example.com"]
    ordered = [r.name async for r in acf.dns.records.list(zone_id=ZONE_ID, order="name", direction="desc")]
    assert ordered == ["c.example.com", "b.example.com", "a.example.com"]
