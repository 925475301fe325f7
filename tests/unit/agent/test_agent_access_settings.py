"""The agent's Cloudflare Access service token, cloudflared network, metrics port and external mode settings, and
how the client sends the token and reads what Access answers in front of the master."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from flareport_agent.client import KeyRejected, MasterClient, access_headers
from flareport_common.errors import SettingsError
from flareport_common.protocol import RegisterRequest
from flareport_common.settings import load_agent, secret_values

BASE = {"FLAREPORT_MASTER_URL": "https://master.example.com", "FLAREPORT_API_KEY": "k" * 20}
TOKEN = {"CF_ACCESS_CLIENT_ID": "abc.access", "CF_ACCESS_CLIENT_SECRET": "very-secret-value"}


def test_defaults_keep_todays_behaviour() -> None:
    settings = load_agent(BASE)
    assert (settings.access_client_id, settings.access_client_secret) == (None, "")
    assert settings.cloudflared_network == "cloudflare-net"
    assert settings.cloudflared_metrics_port is None
    assert settings.external_cloudflared is False


def test_the_service_token_is_read_and_its_secret_redacted_from_logs() -> None:
    settings = load_agent({**BASE, **TOKEN})
    assert settings.access_client_id == "abc.access"
    assert "very-secret-value" in secret_values(settings)
    assert "very-secret-value" not in repr(settings)
    assert access_headers(settings.access_client_id, settings.access_client_secret) == {
        "CF-Access-Client-Id": "abc.access",
        "CF-Access-Client-Secret": "very-secret-value",
    }
    assert access_headers(None, "") == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CF_ACCESS_CLIENT_ID": "abc.access"}, "CF_ACCESS_CLIENT_SECRET: required when CF_ACCESS_CLIENT_ID is set"),
        ({"CF_ACCESS_CLIENT_SECRET": "s"}, "CF_ACCESS_CLIENT_ID: required when CF_ACCESS_CLIENT_SECRET is set"),
        ({**TOKEN, "CF_ACCESS_CLIENT_SECRET": "two words"}, "CF_ACCESS_CLIENT_SECRET: expected 1-512 printable"),
        ({"CLOUDFLARED_NETWORK_NAME": "-bad"}, "CLOUDFLARED_NETWORK_NAME: expected a Docker network name"),
        ({"CLOUDFLARED_NETWORK_NAME": "a b"}, "CLOUDFLARED_NETWORK_NAME: expected a Docker network name"),
        ({"CLOUDFLARED_METRICS_PORT": "0"}, "CLOUDFLARED_METRICS_PORT: must be at least 1"),
        ({"CLOUDFLARED_METRICS_PORT": "70000"}, "CLOUDFLARED_METRICS_PORT: must be at most 65535"),
        ({"CLOUDFLARED_METRICS_PORT": "x"}, "CLOUDFLARED_METRICS_PORT: expected an integer"),
        ({"FLAREPORT_EXTERNAL_CLOUDFLARED": "maybe"}, "FLAREPORT_EXTERNAL_CLOUDFLARED: expected true/false"),
        (
            {"USE_EXTERNAL_CLOUDFLARED": "true", "CLOUDFLARED_METRICS_PORT": "2000"},
            "CLOUDFLARED_METRICS_PORT: has no effect with FLAREPORT_EXTERNAL_CLOUDFLARED=true",
        ),
    ],
)
def test_bad_values_stop_the_agent_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_agent({**BASE, **env})


def test_network_metrics_port_and_external_mode_with_dockflares_switch() -> None:
    settings = load_agent({**BASE, "CLOUDFLARED_NETWORK_NAME": "edge_net.1", "CLOUDFLARED_METRICS_PORT": "2000"})
    assert (settings.cloudflared_network, settings.cloudflared_metrics_port) == ("edge_net.1", 2000)
    assert load_agent({**BASE, "USE_EXTERNAL_CLOUDFLARED": "yes"}).external_cloudflared is True
    own_name_wins = {"FLAREPORT_EXTERNAL_CLOUDFLARED": "false", "USE_EXTERNAL_CLOUDFLARED": "true"}
    assert load_agent({**BASE, **own_name_wins}).external_cloudflared is False


@pytest.fixture
async def access() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Cloudflare Access as it answers an unknown caller: a redirect to its login page, or a bare 403."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if request.path.endswith("/register"):
            raise web.HTTPFound("https://team.cloudflareaccess.com/cdn-cgi/access/login")
        return web.Response(status=403, text="<html>Forbidden</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


async def test_access_refusals_name_the_service_token_settings(access: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = access
    client = MasterClient(url, "key", headers=access_headers("abc.access", "wrong"))
    client.agent_id = "agent-1"
    try:
        with pytest.raises(KeyRejected, match=r"redirect to team\.cloudflareaccess\.com: refused before the master"):
            await client.register(RegisterRequest(display_name="h"))
        with pytest.raises(KeyRejected, match=r"HTTP 403: refused before the master.*CF_ACCESS_CLIENT_ID"):
            await client.poll_commands(0)
    finally:
        await client.close()
    assert [(h["CF-Access-Client-Id"], h["CF-Access-Client-Secret"]) for h in seen] == [("abc.access", "wrong")] * 2
