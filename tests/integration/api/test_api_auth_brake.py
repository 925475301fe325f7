"""The brake on failed authentications, attacked through a real ``flareport api`` process over HTTP: failing on
purpose from the same address (or behind the same reverse proxy) never locks out a valid agent key or the admin,
and forwarded addresses are believed only from configured proxies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from flareport_cli.localredis import LocalRedis
from fptest.api_helpers import MASTER
from fptest.cli_helpers import ApiProcess, api_process

ADMIN = {"Authorization": f"Bearer {MASTER}"}
LIMIT = 3


@pytest.fixture
def braked_api(redis_server: LocalRedis, prefix: str, tmp_path: Path) -> Iterator[ApiProcess]:
    extra = {
        "FLAREPORT_API_AUTH_FAILURE_LIMIT": str(LIMIT),
        "FLAREPORT_API_AUTH_FAILURE_WINDOW_SECONDS": "600",
        # The test client connects over loopback: it plays the reverse proxy.
        "FLAREPORT_TRUSTED_PROXIES": "127.0.0.1, ::1",
    }
    with api_process(redis_server.url, prefix, tmp_path / "api.log", extra) as process:
        yield process


@pytest.fixture
def untrusting_api(redis_server: LocalRedis, prefix: str, tmp_path: Path) -> Iterator[ApiProcess]:
    extra = {"FLAREPORT_API_AUTH_FAILURE_LIMIT": str(LIMIT), "FLAREPORT_TRUSTED_PROXIES": "10.9.9.9"}
    with api_process(redis_server.url, prefix, tmp_path / "api.log", extra) as process:
        yield process


async def _new_key(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(f"{url}/api/v1/keys", json={"label": "victim"}, headers=ADMIN) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["key"])


async def _status(http: aiohttp.ClientSession, method: str, url: str, token: str, **headers: str) -> int:
    async with http.request(method, url, headers={"Authorization": f"Bearer {token}", **headers}) as response:
        await response.read()
        return response.status


async def test_failing_on_purpose_never_locks_out_a_valid_agent_key_or_the_admin(braked_api: ApiProcess) -> None:
    url = braked_api.url
    async with aiohttp.ClientSession() as http:
        victim = await _new_key(http, url)
        # The attacker knows the victim's key id (ids are shown in the UI and logs) and fails with it, and with the
        # admin key, many times over from the very address the victim uses.
        forged = victim[: len("fpk_") + 16] + "~" + "A" * 22 + "." + "B" * 43
        assert forged != victim
        agent_statuses = [
            await _status(http, "POST", f"{url}/api/v1/agents/register", forged) for _ in range(LIMIT + 5)
        ]
        admin_statuses = [await _status(http, "GET", f"{url}/api/v1/keys", "not-the-master") for _ in range(LIMIT + 5)]
        assert agent_statuses[-1] == 429 and admin_statuses[-1] == 429, (agent_statuses, admin_statuses)

        # The valid credentials still work from that same address, at once.
        assert await _status(http, "GET", f"{url}/api/v1/keys", MASTER) == 200
        async with http.post(
            f"{url}/api/v1/agents/register",
            json={"display_name": "victim host"},
            headers={"Authorization": f"Bearer {victim}"},
        ) as response:
            assert response.status == 200, await response.text()


async def test_each_client_behind_a_trusted_proxy_is_braked_on_its_own(braked_api: ApiProcess) -> None:
    url = f"{braked_api.url}/api/v1/keys"
    async with aiohttp.ClientSession() as http:
        attacker = [await _status(http, "GET", url, "guess", **{"X-Forwarded-For": "198.51.100.1"}) for _ in range(6)]
        assert attacker[:LIMIT] == [401] * LIMIT and attacker[-1] == 429, attacker
        # Another client behind the same proxy is not punished for the attacker's failures ...
        other = await _status(http, "GET", url, "typo", **{"X-Forwarded-For": "198.51.100.2"})
        assert other == 401
        # ... and the attacker cannot escape by prepending addresses: the proxy appended the real one last.
        spoofed = "203.0.113.9, 198.51.100.1"
        assert await _status(http, "GET", url, "guess", **{"X-Forwarded-For": spoofed}) == 429


async def test_forwarded_addresses_from_a_peer_that_is_no_trusted_proxy_are_ignored(untrusting_api: ApiProcess) -> None:
    url = f"{untrusting_api.url}/api/v1/keys"
    async with aiohttp.ClientSession() as http:
        statuses = [
            await _status(http, "GET", url, "guess", **{"X-Forwarded-For": f"192.0.2.{n}"}) for n in range(LIMIT + 2)
        ]
    assert statuses[:LIMIT] == [401] * LIMIT and statuses[LIMIT:] == [429, 429], (
        "a fresh forged address per request must not escape the brake",
        statuses,
    )


async def test_failures_are_counted_per_presented_key_id(braked_api: ApiProcess) -> None:
    url = f"{braked_api.url}/api/v1/agents/register"

    def forged(hex_id: str) -> str:
        return f"fpk_{hex_id}~{'A' * 22}.{'B' * 43}"

    async with aiohttp.ClientSession() as http:
        first = [await _status(http, "POST", url, forged("0123456789abcdef")) for _ in range(LIMIT + 1)]
        assert first[-1] == 429, first
        # A misconfigured agent with another key (an old, revoked one, say) is told 401, not braked for the first.
        assert await _status(http, "POST", url, forged("fedcba9876543210")) == 401
