"""Access groups over HTTP on the real redis-server: ids chosen by the admin (labels reference them as
``access.group=<id>``), ids derived from the name, DockFlare's two system groups (always listed, never stored,
never changed) and the checks on a group's definition."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from flareport_common.access import AUTHENTICATED, PUBLIC_BYPASS
from flareport_common.messages import AccessGroupDeleted, AccessGroupUpserted, IntentMessage
from fptest.api_helpers import stream_messages

from .conftest import Api

GROUPS = "/api/v1/access-groups"
STAFF = [{"email_domain": {"domain": "example.com"}}]


async def call(api: Api, method: str, path: str, status: int, body: Any = None) -> Any:
    response = await api.client.request(method, path, json=body, headers=api.admin)
    text = await response.text()
    assert response.status == status, f"{method} {path}: expected {status}, got {response.status}: {text}"
    return msgspec.json.decode(text)


async def intents(api: Api) -> list[Any]:
    return await stream_messages(api.redis, api.keys.intents, IntentMessage)


async def stored_ids(api: Api) -> set[str]:
    found: list[Any] = await api.redis.hkeys(api.keys.api_access_groups)
    return {k.decode() for k in found}


async def test_a_group_created_with_a_chosen_id_is_found_by_that_id(api: Api) -> None:
    created = await call(api, "POST", GROUPS, 201, {"group_id": "admin-users", "name": "Admins", "include": STAFF})
    assert (created["group_id"], created["system"]) == ("admin-users", False)
    shown = await call(api, "GET", f"{GROUPS}/admin-users", 200)
    assert (shown["name"], shown["include"]) == ("Admins", STAFF)
    [intent] = await intents(api)
    assert (
        isinstance(intent, AccessGroupUpserted)
        and intent.group_id == "admin-users"
        and intent.include == ({"email_domain": {"domain": "example.com"}},)
    )

    # The id is taken: 409 naming it, and nothing is overwritten or sent.
    taken = await call(api, "POST", GROUPS, 409, {"group_id": "admin-users", "name": "Other", "include": STAFF})
    assert taken["error"]["field"] == "group_id" and "admin-users" in taken["error"]["message"]
    assert (await call(api, "GET", f"{GROUPS}/admin-users", 200))["name"] == "Admins"
    assert len(await intents(api)) == 1

    # Replaced in place by PUT (the id stays), deleted by DELETE.
    replaced = await call(api, "PUT", f"{GROUPS}/admin-users", 200, {"name": "Admins", "include": STAFF,
                                                                      "decision": "deny"})  # fmt: skip
    assert (replaced["group_id"], replaced["decision"]) == ("admin-users", "deny")
    assert (await call(api, "PUT", f"{GROUPS}/nobody", 404, {"name": "x", "include": STAFF}))["error"]["code"] == (
        "not_found"
    )
    await call(api, "DELETE", f"{GROUPS}/admin-users", 202)
    assert [type(i) for i in await intents(api)] == [AccessGroupUpserted, AccessGroupUpserted, AccessGroupDeleted]
    assert await stored_ids(api) == set()


@pytest.mark.parametrize(
    "group_id",
    ["Admin-Users", "-admins", "_admins", ".admins", "a" * 65, "admin users", "admins\n", "", "admins/x", "ädmins"],
)
async def test_an_invalid_chosen_id_is_a_422_naming_group_id(api: Api, group_id: str) -> None:
    refused = await call(api, "POST", GROUPS, 422, {"group_id": group_id, "name": "Admins", "include": STAFF})
    assert refused["error"]["field"] == "group_id", refused
    assert "lowercase letters, digits" in refused["error"]["message"]
    assert await intents(api) == [] and await stored_ids(api) == set()


async def test_the_longest_chosen_id_and_every_allowed_character_are_taken(api: Api) -> None:
    for group_id in ("a" * 64, "0ps_team-2.eu", "x"):
        created = await call(api, "POST", GROUPS, 201, {"group_id": group_id, "name": "n", "include": STAFF})
        assert created["group_id"] == group_id


async def test_without_an_id_it_is_derived_from_the_name_or_generated(api: Api) -> None:
    first = await call(api, "POST", GROUPS, 201, {"name": "Ops Team (EU)", "include": STAFF})
    assert first["group_id"] == "ops-team-eu"
    # The name's id is taken: a generated one, as before.
    second = await call(api, "POST", GROUPS, 201, {"name": "Ops Team (EU)", "include": STAFF})
    assert second["group_id"].startswith("ag_") and second["group_id"] != "ops-team-eu"
    # Nothing usable in the name; a name that spells a system group or the reserved "bypass".
    for name in ("!!!", "Public Default Bypass", "Bypass"):
        created = await call(api, "POST", GROUPS, 201, {"name": name, "include": STAFF})
        assert created["group_id"].startswith("ag_"), created
    listed = (await call(api, "GET", GROUPS, 200))["groups"]
    assert len([g for g in listed if not g["system"]]) == 5


async def test_concurrent_creates_of_one_id_make_exactly_one_group(api: Api) -> None:
    bodies = [{"group_id": "oncall", "name": f"team {i}", "include": STAFF} for i in range(12)]
    answers = await asyncio.gather(*(api.client.post(GROUPS, json=body, headers=api.admin) for body in bodies))
    assert sorted(a.status for a in answers) == [201] + [409] * 11
    winner = next(b for a, b in zip(answers, bodies, strict=True) if a.status == 201)
    assert (await call(api, "GET", f"{GROUPS}/oncall", 200))["name"] == winner["name"]
    assert [i.name for i in await intents(api)] == [winner["name"]], "one intent, for the group that was stored"


async def test_the_system_groups_are_always_listed_with_what_they_mean(api: Api) -> None:
    listed = (await call(api, "GET", GROUPS, 200))["groups"]
    assert [(g["group_id"], g["system"]) for g in listed] == [(PUBLIC_BYPASS, True), (AUTHENTICATED, True)]
    public, owner = listed
    assert (public["decision"], public["include"]) == ("bypass", [{"everyone": {}}])
    assert "public" in public["description"] and "everyone" in public["description"]
    assert owner["decision"] == "allow"
    assert "One-time PIN" in owner["description"] and "account owner's email" in owner["description"]
    for group in listed:
        assert await call(api, "GET", f"{GROUPS}/{group['group_id']}", 200) == group

    await call(api, "POST", GROUPS, 201, {"group_id": "staff", "name": "Staff", "include": STAFF})
    listed = (await call(api, "GET", GROUPS, 200))["groups"]
    assert [(g["group_id"], g["system"]) for g in listed] == [
        (PUBLIC_BYPASS, True), (AUTHENTICATED, True), ("staff", False),
    ]  # fmt: skip
    assert await stored_ids(api) == {"staff"}, "the system groups are never stored"


@pytest.mark.parametrize("group_id", [PUBLIC_BYPASS, AUTHENTICATED])
async def test_a_system_group_cannot_be_created_replaced_or_deleted(api: Api, group_id: str) -> None:
    body = {"name": "mine", "include": [{"everyone": {}}]}
    for method, path, request in (
        ("POST", GROUPS, {**body, "group_id": group_id}),
        ("PUT", f"{GROUPS}/{group_id}", body),
        ("DELETE", f"{GROUPS}/{group_id}", None),
    ):
        refused = (await call(api, method, path, 409, request))["error"]
        assert refused["code"] == "system_group" and group_id in refused["message"], (method, refused)
        assert "system group" in refused["message"]
    assert await intents(api) == [] and await stored_ids(api) == set()
    assert (await call(api, "GET", f"{GROUPS}/{group_id}", 200))["system"] is True


async def test_the_old_bypass_id_is_reserved(api: Api) -> None:
    refused = await call(api, "POST", GROUPS, 409, {"group_id": "bypass", "name": "b", "include": STAFF})
    assert refused["error"]["field"] == "group_id" and PUBLIC_BYPASS in refused["error"]["message"]
    assert await intents(api) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "g"}, "include"),
        ({"name": "g", "include": []}, "include"),
        ({"name": "g", "include": [{}]}, "include[0]"),
        ({"name": "g", "include": [{"email": {"email": "a@x.com"}, "everyone": {}}]}, "include[0]"),
        ({"name": "g", "include": [{"everyone": {}}, {"emial": {"email": "a@x.com"}}]}, "include[1]"),
        ({"name": "g", "include": [{"everyone": True}]}, "include[0].everyone"),
        ({"name": "g", "include": STAFF, "exclude": [{"nobody": {}}]}, "exclude[0]"),
        ({"name": "g", "include": STAFF, "require": [{"email": {}, "geo": {}}]}, "require[0]"),
        ({"name": "g", "include": STAFF, "require": ["email"]}, "require[0]"),
        ({"name": "g", "include": STAFF, "decision": "block"}, "decision"),
        ({"name": "g", "include": STAFF, "session_duration": "a day"}, "session_duration"),
        ({"name": " ", "include": STAFF}, "name"),
    ],
)
async def test_a_group_definition_is_checked(api: Api, body: dict[str, Any], field: str) -> None:
    refused = await call(api, "POST", GROUPS, 422, body)
    assert refused["error"]["field"] == field, refused
    await call(api, "POST", GROUPS, 201, {"group_id": "g", "name": "g", "include": STAFF})
    replaced = await call(api, "PUT", f"{GROUPS}/g", 422, body)
    assert replaced["error"]["field"] == field, replaced
    assert len(await intents(api)) == 1, "only the valid group was sent to the reconciler"


async def test_a_group_stored_by_an_earlier_version_keeps_working(api: Api) -> None:
    old: dict[str, Any] = {"group_id": "ag_0123456789abcdef", "name": "legacy", "decision": "allow",
           "include": [{"email": {"email": "a@example.com"}}], "updated_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    await api.redis.hset(api.keys.api_access_groups, old["group_id"], msgspec.json.encode(old))
    path = f"{GROUPS}/{old['group_id']}"
    shown = await call(api, "GET", path, 200)
    assert (shown["name"], shown["system"], shown["include"]) == ("legacy", False, old["include"])
    assert old["group_id"] in [g["group_id"] for g in (await call(api, "GET", GROUPS, 200))["groups"]]
    await call(api, "PUT", path, 200, {"name": "legacy", "include": STAFF})
    await call(api, "DELETE", path, 202)
    assert [(type(i), i.group_id) for i in await intents(api)] == [
        (AccessGroupUpserted, old["group_id"]), (AccessGroupDeleted, old["group_id"]),
    ]  # fmt: skip


async def test_the_openapi_document_describes_chosen_ids_and_system_groups(api: Api) -> None:
    document = await (await api.client.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    create = document["paths"][GROUPS]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("AccessGroupCreateRequest")
    assert "409" in create["responses"]
    chosen = schemas["AccessGroupCreateRequest"]["properties"]["group_id"]
    assert "^[a-z0-9][a-z0-9_.-]{0,63}$" in str(chosen)
    assert schemas["AccessGroupCreateRequest"]["properties"]["include"]["minItems"] == 1
    assert {"system", "description"} <= set(schemas["AccessGroup"]["properties"])
    for method in ("put", "delete"):
        assert "409" in document["paths"][GROUPS + "/{group_id}"][method]["responses"]
