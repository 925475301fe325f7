"""``flareport settings`` / ``GET /api/v1/settings`` against a real ``flareport api`` process: the API's effective
configuration with every secret masked, for the admin only."""

from __future__ import annotations

import pytest

from flareport_cli.admin.client import ApiClient, CliError
from fptest.api_helpers import MASTER
from fptest.cli_helpers import ApiProcess, register_agent, row, run_cli


def test_the_admin_sees_the_effective_settings_without_secrets(api: ApiProcess, prefix: str) -> None:
    listed = run_cli("settings")
    assert listed.code == 0, listed.err
    assert row(listed, "master_api_key")[1] == "set (hidden)"
    assert row(listed, "common.key_prefix")[1] == prefix
    assert "docs/configuration.md" in listed.out, "it says where the other services' settings are"
    assert MASTER not in listed.out

    body = run_cli("settings", "--json").json()
    assert body["service"] == "api"
    shown = {s["name"]: s["value"] for s in body["settings"]}
    assert shown["port"] == api.url.rsplit(":", 1)[1]
    assert MASTER not in str(body)

    key = ApiClient(api.url, MASTER).post("/api/v1/keys", {"label": "edge"}).json()["key"]
    register_agent(api.url, key)
    with pytest.raises(CliError) as refused:
        ApiClient(api.url, key).get("/api/v1/settings")
    assert "HTTP 401" in refused.value.message, "an agent key never reaches an admin route"
