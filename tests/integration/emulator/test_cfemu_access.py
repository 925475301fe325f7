"""Access: tags, reusable policies, applications with linked and inline policies, app-scoped policies."""

from __future__ import annotations

import asyncio
from typing import Any

import cloudflare
import pytest

from flareport_cfemu.testing import ACCOUNT_ID

EVERYONE: Any = [{"everyone": {}}]


def _id(obj: Any) -> str:
    """The id of an SDK object, which the SDK types as optional."""
    assert obj is not None and isinstance(obj.id, str), f"expected an object with an id, got {obj!r}"
    return obj.id


async def test_app_with_reusable_policies_and_tags(acf: cloudflare.AsyncCloudflare) -> None:
    access: Any = acf.zero_trust.access  # the SDK overloads apps per type; the emulator serves self_hosted
    await access.tags.create(account_id=ACCOUNT_ID, name="flareport")
    reusable = await access.policies.create(account_id=ACCOUNT_ID, name="staff", decision="allow", include=EVERYONE)
    assert reusable is not None and reusable.reusable is True and reusable.app_count == 0

    app = await access.applications.create(
        account_id=ACCOUNT_ID,
        type="self_hosted",
        domain="App.example.com",
        name="App",
        session_duration="12h",
        tags=["flareport"],
        app_launcher_visible=False,
        policies=[{"id": reusable.id, "precedence": 1}],
    )
    assert app is not None and app.id
    got: Any = await access.applications.get(app.id, account_id=ACCOUNT_ID)
    assert (got.domain, got.session_duration, got.tags, got.app_launcher_visible) == (
        "app.example.com",
        "12h",
        ["flareport"],
        False,
    )
    assert [(p.name, p.precedence) for p in got.policies] == [("staff", 1)]
    assert "reusable" not in got.policies[0].to_dict()  # not in Cloudflare's schema of a policy embedded in an app
    assert (await access.policies.get(reusable.id, account_id=ACCOUNT_ID)).app_count == 1
    tags = [t async for t in access.tags.list(account_id=ACCOUNT_ID)]
    assert [(t.name, t.to_dict()["app_count"]) for t in tags] == [("flareport", 1)]

    with pytest.raises(cloudflare.BadRequestError, match="used by 1 application"):
        await access.policies.delete(reusable.id, account_id=ACCOUNT_ID)

    updated: Any = await access.applications.update(
        app.id,
        account_id=ACCOUNT_ID,
        type="self_hosted",
        domain="app.example.com",
        name="App v2",
        policies=[reusable.id],
    )
    assert updated.name == "App v2" and [p.name for p in updated.policies] == ["staff"]
    assert updated.session_duration == "24h", "PUT resets omitted fields to their defaults"

    deleted = await access.applications.delete(app.id, account_id=ACCOUNT_ID)
    assert deleted is not None and deleted.id == app.id
    assert [a async for a in access.applications.list(account_id=ACCOUNT_ID)] == []
    await access.policies.delete(reusable.id, account_id=ACCOUNT_ID)
    assert [p async for p in access.policies.list(account_id=ACCOUNT_ID)] == []


async def test_reusable_policy_update_is_seen_by_apps(scf: cloudflare.Cloudflare) -> None:
    access: Any = scf.zero_trust.access
    policy = await asyncio.to_thread(
        access.policies.create, account_id=ACCOUNT_ID, name="p", decision="allow", include=EVERYONE
    )
    assert policy is not None and policy.id
    app = await asyncio.to_thread(
        access.applications.create,
        account_id=ACCOUNT_ID,
        type="self_hosted",
        domain="x.example.com",
        policies=[policy.id],
    )
    assert app is not None and app.id
    await asyncio.to_thread(
        access.policies.update, policy.id, account_id=ACCOUNT_ID, name="p2", decision="bypass", include=EVERYONE
    )
    got: Any = await asyncio.to_thread(access.applications.get, app.id, account_id=ACCOUNT_ID)
    assert [(p.name, p.decision) for p in got.policies] == [("p2", "bypass")]
    listed = await asyncio.to_thread(lambda: [a.id for a in access.applications.list(account_id=ACCOUNT_ID)])
    assert listed == [app.id]


async def test_app_scoped_policies_crud(acf: cloudflare.AsyncCloudflare) -> None:
    access: Any = acf.zero_trust.access
    app = await access.applications.create(account_id=ACCOUNT_ID, type="self_hosted", domain="s.example.com")
    assert app is not None and app.id
    scoped = access.applications.policies
    created = await scoped.create(
        app.id, account_id=ACCOUNT_ID, name="emails", decision="allow", include=[{"email": {"email": "a@example.com"}}]
    )
    assert created is not None and created.id and created.precedence == 1
    await scoped.update(
        created.id, app_id=app.id, account_id=ACCOUNT_ID, name="emails2", decision="allow", include=EVERYONE
    )
    listed = [(p.name, p.precedence) async for p in scoped.list(app.id, account_id=ACCOUNT_ID)]
    assert listed == [("emails2", 1)]
    await scoped.delete(created.id, app_id=app.id, account_id=ACCOUNT_ID)
    with pytest.raises(cloudflare.NotFoundError):
        await scoped.get(created.id, app_id=app.id, account_id=ACCOUNT_ID)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": "self_hosted"}, "domain is required"),
        ({"type": "self_hosted", "domain": "t.example.com", "tags": ["missing"]}, "does not exist"),
        ({"type": "self_hosted", "domain": "t.example.com", "session_duration": "soon"}, "session_duration"),
        ({"type": "self_hosted", "domain": "t.example.com", "policies": ["no-such-policy"]}, "not_found"),
        pytest.param(
            {
                "type": "self_hosted",
                "domain": "t.example.com",
                "policies": [{"name": "x", "decision": "maybe", "include": EVERYONE}],
            },
            "decision",
            marks=pytest.mark.cloudflare_contracts_off,  # a decision the SDK's types refuse: the emulator's own check
        ),
    ],
)
async def test_invalid_applications_are_rejected(
    acf: cloudflare.AsyncCloudflare, fields: dict[str, Any], reason: str
) -> None:
    apps: Any = acf.zero_trust.access.applications
    with pytest.raises(cloudflare.APIStatusError) as caught:
        await apps.create(account_id=ACCOUNT_ID, **fields)
    assert caught.value.status_code in (400, 404)
    assert reason in str(caught.value)
    body: Any = caught.value.body
    assert body["errors"][0]["code"] == 12130


async def test_duplicate_domain_is_rejected_and_unknown_app_is_404(acf: cloudflare.AsyncCloudflare) -> None:
    apps: Any = acf.zero_trust.access.applications
    await apps.create(account_id=ACCOUNT_ID, type="self_hosted", domain="d.example.com")
    with pytest.raises(cloudflare.ConflictError) as caught:
        await apps.create(account_id=ACCOUNT_ID, type="self_hosted", domain="D.example.com")
    body: Any = caught.value.body
    assert body["errors"][0] == {"code": 11010, "message": "access.api.error.application_already_exists"}
    with pytest.raises(cloudflare.NotFoundError):
        await apps.get("00000000-0000-4000-8000-000000000000", account_id=ACCOUNT_ID)


async def test_app_list_paginates_and_filters_by_domain(acf: cloudflare.AsyncCloudflare) -> None:
    apps: Any = acf.zero_trust.access.applications
    for i in range(30):
        await apps.create(account_id=ACCOUNT_ID, type="self_hosted", domain=f"a{i:02}.example.com")
    everything = [a async for a in apps.list(account_id=ACCOUNT_ID, per_page=10)]
    assert len(everything) == 30
    exact = [a async for a in apps.list(account_id=ACCOUNT_ID, domain="a07.example.com", exact=True)]
    assert [a.domain for a in exact] == ["a07.example.com"]
