"""Access apps the emulator refuses as Cloudflare does: reusable and inline policies mixed in one app, a domain
whose path is a regular expression, a domain missing from ``self_hosted_domains``.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from flareport_cfemu.testing import ACCOUNT_ID, RunningEmulator

ACCESS = f"/accounts/{ACCOUNT_ID}/access"
EVERYONE: list[dict[str, Any]] = [{"everyone": {}}]


async def _api(cfemu: RunningEmulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": "Bearer test-token"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, cfemu.base_url + path, headers=headers, json=body) as response,
    ):
        return response.status, await response.json()


async def _reusable(cfemu: RunningEmulator, name: str) -> str:
    status, body = await _api(
        cfemu, "POST", ACCESS + "/policies", {"name": name, "decision": "allow", "include": EVERYONE}
    )
    assert status == 201, body
    return str(body["result"]["id"])


def _app(domain: str, policies: list[Any], **extra: Any) -> dict[str, Any]:
    return {"type": "self_hosted", "domain": domain, "policies": policies, **extra}


async def test_reusable_links_and_inline_policies_are_never_mixed_in_one_app(cfemu: RunningEmulator) -> None:
    staff = await _reusable(cfemu, "staff")
    inline = {"name": "everyone", "decision": "bypass", "include": EVERYONE}
    status, body = await _api(cfemu, "POST", ACCESS + "/apps", _app("app.example.com", [{"id": staff}, inline]))
    assert status == 400 and body["errors"][0]["code"] == 12130, body
    assert "mutually exclusive" in body["errors"][0]["message"]
    assert cfemu.emulator.state.access_apps == {}, "a refused create stores nothing"
    assert [p["name"] for p in cfemu.emulator.state.access_policies.values()] == ["staff"], "no inline policy left"

    # Each kind alone is fine; a PUT that mixes them is refused and leaves the app as it was.
    status, body = await _api(cfemu, "POST", ACCESS + "/apps", _app("app.example.com", [{"id": staff}]))
    assert status == 201, body
    app_id = body["result"]["id"]
    status, body = await _api(cfemu, "PUT", f"{ACCESS}/apps/{app_id}", _app("app.example.com", [staff, inline]))
    assert status == 400 and "mutually exclusive" in body["errors"][0]["message"], body
    assert cfemu.emulator.state.access_apps[app_id]["_policy_links"] == [{"id": staff, "precedence": 1}]
    # Nor can an app-scoped policy be added to an app that links reusable ones.
    status, body = await _api(cfemu, "POST", f"{ACCESS}/apps/{app_id}/policies", inline)
    assert status == 400 and "mutually exclusive" in body["errors"][0]["message"], body
    status, body = await _api(cfemu, "PUT", f"{ACCESS}/apps/{app_id}", _app("app.example.com", [inline]))
    assert status == 200, body


@pytest.mark.parametrize(
    "domain",
    [
        "app.example.com/^/api/.*",
        "app.example.com^/api",
        "app.example.com/api/(v1|v2)",
        "app.example.com/api/v[12]",
        "app.example.com/a+b",
        "app.example.com/api?",
        "app.example.com/{x}",
        "app.example.com/a\\b",
        "app.example.com/a b",
        "app.example.com/end$",
        "app .example.com",
        "https://app.example.com",
    ],
)
async def test_a_domain_whose_path_is_not_literal_is_refused(cfemu: RunningEmulator, domain: str) -> None:
    status, body = await _api(
        cfemu, "POST", ACCESS + "/apps", _app(domain, [{"name": "p", "decision": "bypass", "include": EVERYONE}])
    )
    assert status == 400 and body["errors"][0]["code"] == 12130, (domain, body)
    assert cfemu.emulator.state.access_apps == {}


@pytest.mark.parametrize(
    "domain",
    ["app.example.com", "app.example.com/api", "app.example.com/api/*/v1", "*.example.com/*", "a.example.com/"],
)
async def test_host_plus_a_literal_path_with_wildcards_is_taken(cfemu: RunningEmulator, domain: str) -> None:
    status, body = await _api(
        cfemu, "POST", ACCESS + "/apps", _app(domain, [{"name": "p", "decision": "bypass", "include": EVERYONE}])
    )
    assert status == 201, (domain, body)


async def test_the_domain_must_be_one_of_self_hosted_domains(cfemu: RunningEmulator) -> None:
    policies = [{"name": "p", "decision": "bypass", "include": EVERYONE}]
    status, body = await _api(
        cfemu,
        "POST",
        ACCESS + "/apps",
        _app("app.example.com", policies, self_hosted_domains=["other.example.com"]),
    )
    assert status == 400 and "domain not included in self_hosted_domains" in body["errors"][0]["message"], body
    status, body = await _api(
        cfemu,
        "POST",
        ACCESS + "/apps",
        _app("app.example.com", policies, self_hosted_domains=["app.example.com", "other.example.com"]),
    )
    assert status == 201, body
    assert body["result"]["self_hosted_domains"] == ["app.example.com", "other.example.com"]


async def test_the_host_is_case_insensitive_and_the_path_keeps_its_case(cfemu: RunningEmulator) -> None:
    policies = [{"name": "p", "decision": "bypass", "include": EVERYONE}]
    status, body = await _api(cfemu, "POST", ACCESS + "/apps", _app("App.Example.com/Admin", policies))
    assert status == 201 and body["result"]["domain"] == "app.example.com/Admin", body
    status, body = await _api(cfemu, "POST", ACCESS + "/apps", _app("app.example.com/admin", policies))
    assert status == 409 and body["errors"][0]["code"] == 11010, "one app per domain, whatever the case"
