"""The socket guard follows the agent's CLOUDFLARED_NETWORK_NAME and CLOUDFLARED_METRICS_PORT: it lets through the
cloudflared the agent then creates, and still nothing else; and those settings are part of cloudflared's hash."""

from __future__ import annotations

import hashlib
import json

import docker
import pytest

from flareport_agent.sockguard import Refused, check_container_create, check_network_create
from flareport_agent.sockguard_server import build_parser, build_policy
from flareport_agent.tunnel import TunnelManager

from .test_agent_sockguard import agent_body


def test_the_agents_network_and_metrics_port_are_what_the_guard_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARED_NETWORK_NAME", "edge")
    monkeypatch.setenv("CLOUDFLARED_METRICS_PORT", "2000")
    policy = build_policy(build_parser().parse_args([]))
    metrics = ["tunnel", "--no-autoupdate", "--metrics", "0.0.0.0:2000", "run"]
    body = agent_body(Cmd=metrics, HostConfig={"NetworkMode": "edge"}, NetworkingConfig={"edge": None})
    assert json.loads(check_container_create(policy, json.dumps(body).encode()))["Cmd"] == metrics
    check_network_create(policy, json.dumps({"Name": "edge", "Driver": "bridge"}).encode())
    for wrong in (
        agent_body(Cmd=[*metrics[:3], "0.0.0.0:2375", "run"], HostConfig={"NetworkMode": "edge"}),
        agent_body(Cmd=["tunnel", "--no-autoupdate", "run"], HostConfig={"NetworkMode": "edge"}),
        agent_body(Cmd=metrics, HostConfig={"NetworkMode": "cloudflare-net"}),
    ):
        with pytest.raises(Refused):
            check_container_create(policy, json.dumps(wrong).encode())


def test_the_guards_own_network_option_wins_and_a_bad_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARED_NETWORK_NAME", "edge")
    monkeypatch.setenv("FLAREPORT_GUARD_NETWORK", "guarded")
    assert build_policy(build_parser().parse_args([])).network == "guarded"
    assert build_policy(build_parser().parse_args([])).command == ("tunnel", "--no-autoupdate", "run")
    with pytest.raises(ValueError, match="--metrics-port: must be 1-65535"):
        build_policy(build_parser().parse_args(["--metrics-port", "0"]))


def test_cloudflareds_hash_changes_with_network_and_metrics_port_and_not_on_upgrade() -> None:
    def factory() -> docker.DockerClient:
        raise AssertionError("computing a hash needs no engine")

    # The formula of releases before these settings existed: a running cloudflared with the defaults is kept.
    earlier = hashlib.sha256(b"tun-1\0token\0img:1").hexdigest()[:32]
    assert TunnelManager(factory).config_hash("tun-1", "token", "img:1") == earlier
    shapes = {
        TunnelManager(factory, network="edge").config_hash("tun-1", "token", "img:1"),
        TunnelManager(factory, metrics_port=2000).config_hash("tun-1", "token", "img:1"),
        TunnelManager(factory, metrics_port=2001).config_hash("tun-1", "token", "img:1"),
    }
    assert len(shapes) == 3 and earlier not in shapes, "each change of shape replaces cloudflared"
