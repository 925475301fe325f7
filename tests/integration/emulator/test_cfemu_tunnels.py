"""Cloudflare Tunnels: lifecycle, token, soft delete and cloudflared's ingress validation."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, cast

import cloudflare
import pytest

from flareport_cfemu.testing import ACCOUNT_ID, RunningEmulator

CATCH_ALL = {"service": "http_status:404"}


def _id(obj: Any) -> str:
    """The id of an SDK object, which the SDK types as optional."""
    assert obj is not None and isinstance(obj.id, str), f"expected an object with an id, got {obj!r}"
    return obj.id


async def test_tunnel_lifecycle_token_and_soft_delete(acf: cloudflare.AsyncCloudflare) -> None:
    tunnels = acf.zero_trust.tunnels.cloudflared
    created = await tunnels.create(account_id=ACCOUNT_ID, name="host-1", config_src="cloudflare")
    assert created.config_src == "cloudflare" and created.deleted_at is None
    tunnel_id = _id(created)

    token = await tunnels.token.get(tunnel_id, account_id=ACCOUNT_ID)
    decoded = json.loads(base64.b64decode(token))
    assert decoded["a"] == ACCOUNT_ID and decoded["t"] == tunnel_id
    assert len(base64.b64decode(decoded["s"])) == 32

    renamed = await tunnels.edit(tunnel_id, account_id=ACCOUNT_ID, name="host-1b")
    assert renamed.name == "host-1b"
    assert (await tunnels.get(tunnel_id, account_id=ACCOUNT_ID)).name == "host-1b"

    deleted = await tunnels.delete(tunnel_id, account_id=ACCOUNT_ID)
    assert deleted.deleted_at is not None
    live = [t.id async for t in tunnels.list(account_id=ACCOUNT_ID, is_deleted=False)]
    gone = [t.id async for t in tunnels.list(account_id=ACCOUNT_ID, is_deleted=True)]
    assert (live, gone) == ([], [tunnel_id])
    with pytest.raises(cloudflare.NotFoundError):
        await tunnels.token.get(tunnel_id, account_id=ACCOUNT_ID)


async def test_duplicate_live_tunnel_name_is_409_1013_but_a_deleted_name_is_free(
    acf: cloudflare.AsyncCloudflare,
) -> None:
    tunnels = acf.zero_trust.tunnels.cloudflared
    first = await tunnels.create(account_id=ACCOUNT_ID, name="dup", config_src="cloudflare")
    with pytest.raises(cloudflare.ConflictError) as caught:
        await tunnels.create(account_id=ACCOUNT_ID, name="dup", config_src="cloudflare")
    body: Any = caught.value.body
    assert body["errors"][0]["code"] == 1013
    await tunnels.delete(_id(first), account_id=ACCOUNT_ID)
    again = await tunnels.create(account_id=ACCOUNT_ID, name="dup", config_src="cloudflare")
    assert _id(again) != _id(first)
    named = [t.id async for t in tunnels.list(account_id=ACCOUNT_ID, name="dup")]
    assert sorted(str(n) for n in named) == sorted([_id(first), _id(again)])


async def test_configuration_version_increments_on_each_put(scf: cloudflare.Cloudflare) -> None:
    tunnels = scf.zero_trust.tunnels.cloudflared
    tunnel = await asyncio.to_thread(tunnels.create, account_id=ACCOUNT_ID, name="cfg", config_src="cloudflare")
    empty = await asyncio.to_thread(tunnels.configurations.get, _id(tunnel), account_id=ACCOUNT_ID)
    assert empty is not None and empty.version == 0
    config: Any = {
        "ingress": [{"hostname": "app.example.com", "service": "http://web:8080"}, CATCH_ALL],
        "originRequest": {"noTLSVerify": True},
    }
    for expected_version in (1, 2):
        put = await asyncio.to_thread(tunnels.configurations.update, _id(tunnel), account_id=ACCOUNT_ID, config=config)
        assert put is not None and put.version == expected_version
    got = await asyncio.to_thread(tunnels.configurations.get, _id(tunnel), account_id=ACCOUNT_ID)
    assert got is not None and got.version == 2 and got.source == "cloudflare"
    assert got.config is not None and got.config.ingress is not None
    assert [r.hostname for r in got.config.ingress] == ["app.example.com", None]
    assert got.config.origin_request is not None and got.config.origin_request.no_tls_verify is True


@pytest.mark.parametrize(
    ("ingress", "reason"),
    [
        ([{"hostname": "a.example.com", "service": "http://web:80"}], "last ingress rule must match all"),
        ([CATCH_ALL, {"hostname": "a.example.com", "service": "http://web:80"}, CATCH_ALL], "never be triggered"),
        ([{"hostname": "a.*.example.com", "service": "http://w:80"}, CATCH_ALL], "at most one wildcard"),
        ([{"hostname": "*.*.example.com", "service": "http://w:80"}, CATCH_ALL], "at most one wildcard"),
        ([{"hostname": "a.example.com", "service": "http://web:80/app"}, CATCH_ALL], "different path"),
        ([{"hostname": "a.example.com", "service": "ftp://web"}, CATCH_ALL], "unsupported scheme"),
        ([{"hostname": "a.example.com", "service": "http_status:700"}, CATCH_ALL], "invalid HTTP status"),
        ([{"hostname": "a.example.com", "path": "(", "service": "http://w:80"}, CATCH_ALL], "invalid regex"),
        (
            [{"hostname": "a.example.com", "service": "http://w:80"}, {"path": "/x", "service": "http_status:404"}],
            "last ingress rule must match all",
        ),
    ],
)
async def test_invalid_ingress_is_rejected_and_the_stored_config_kept(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare, ingress: list[dict[str, str]], reason: str
) -> None:
    tunnels = acf.zero_trust.tunnels.cloudflared
    tunnel = await tunnels.create(account_id=ACCOUNT_ID, name="strict", config_src="cloudflare")
    good: Any = {"ingress": [{"hostname": "ok.example.com", "service": "https://ok:443"}, CATCH_ALL]}
    await tunnels.configurations.update(_id(tunnel), account_id=ACCOUNT_ID, config=good)
    with pytest.raises(cloudflare.BadRequestError) as caught:
        await tunnels.configurations.update(_id(tunnel), account_id=ACCOUNT_ID, config=cast(Any, {"ingress": ingress}))
    assert reason in str(caught.value)
    kept = await tunnels.configurations.get(_id(tunnel), account_id=ACCOUNT_ID)
    assert kept is not None and kept.version == 1


async def test_valid_service_kinds_are_accepted(acf: cloudflare.AsyncCloudflare) -> None:
    tunnels = acf.zero_trust.tunnels.cloudflared
    tunnel = await tunnels.create(account_id=ACCOUNT_ID, name="kinds", config_src="cloudflare")
    services = [
        "tcp://db:5432",
        "ssh://h:22",
        "rdp://h:3389",
        "unix:/run/app.sock",
        "hello_world",
        "bastion",
        "https://web",
        "ws://w:1",
        "smb://f:445",
        "http_status:503",
    ]
    ingress: Any = [{"hostname": f"s{i}.example.com", "service": s} for i, s in enumerate(services)]
    ingress += [{"hostname": "*.wild.example.com", "path": "^/api/.*$", "service": "http://api:80"}, CATCH_ALL]
    put = await tunnels.configurations.update(_id(tunnel), account_id=ACCOUNT_ID, config={"ingress": ingress})
    assert put is not None and put.version == 1


async def test_unknown_tunnel_and_unknown_account_are_404(acf: cloudflare.AsyncCloudflare) -> None:
    with pytest.raises(cloudflare.NotFoundError):
        await acf.zero_trust.tunnels.cloudflared.get("00000000-0000-4000-8000-000000000000", account_id=ACCOUNT_ID)
    with pytest.raises(cloudflare.NotFoundError):
        await acf.zero_trust.tunnels.cloudflared.create(account_id="9" * 32, name="x", config_src="cloudflare")
