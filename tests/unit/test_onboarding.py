"""The compose file shown with a new key is the reviewed ``agent`` profile of compose.yaml, made to stand alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flareport_common.onboarding import agent_compose, env_file

ROOT = Path(__file__).parents[2]


def reference() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_the_hosts_compose_file_has_the_reference_agent_proxy_and_network() -> None:
    mine = yaml.safe_load(agent_compose("edge-1"))
    ref = reference()
    assert set(mine["services"]) == {"agent", "docker-socket-proxy"}
    proxy, ref_proxy = mine["services"]["docker-socket-proxy"], ref["services"]["docker-socket-proxy"]
    for setting in ("image", "environment", "volumes", "read_only", "security_opt", "tmpfs", "networks", "healthcheck"):
        assert proxy[setting] == ref_proxy[setting], f"socket proxy {setting} differs from compose.yaml's"
    agent, ref_agent = mine["services"]["agent"], ref["services"]["agent"]
    for setting in ("user", "cap_drop", "security_opt", "read_only", "tmpfs", "volumes", "networks", "depends_on"):
        assert agent[setting] == ref_agent[setting], f"agent {setting} differs from compose.yaml's"
    assert agent["environment"] == ref_agent["environment"]
    assert "build" not in agent, "a host has no source tree to build from"
    assert mine["networks"] == {k: ref["networks"][k] for k in ("agent-internal", "cloudflare-net")}
    assert mine["volumes"] == {"agent-data": {}}


def test_the_compose_file_holds_no_secret_and_a_label_cannot_break_it() -> None:
    key = "k" * 43
    assert key in env_file("https://master.example.com", key)
    text = agent_compose("edge\n  injected: true")
    assert key not in text
    assert "injected" not in yaml.safe_load(text), "the label stays inside its comment"
