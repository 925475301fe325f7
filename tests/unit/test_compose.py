"""compose.yaml and the Dockerfile, checked the way `docker compose config` would see them (no engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
CONTROL_PLANE = ("api", "reconciler", "dns-worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_control_plane_services_are_scalable_healthchecked_and_unprivileged(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in CONTROL_PLANE:
        service = services[name]
        assert "container_name" not in service, f"{name} must not pin a container name (it breaks --scale)"
        assert service["user"] == "65532:65532", f"{name} must run as UID/GID 65532"
        assert service["healthcheck"]["test"], f"{name} needs a healthcheck"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["command"] == [name]
        assert service["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")


def test_redis_is_durable_and_password_protected(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--requirepass" in command
    assert redis["healthcheck"]["test"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_agent_profile_uses_a_restricted_socket_proxy_and_cloudflare_net(compose: dict[str, Any]) -> None:
    services = compose["services"]
    agent, proxy = services["agent"], services["docker-socket-proxy"]
    assert agent["profiles"] == ["agent"] and proxy["profiles"] == ["agent"]
    assert agent["environment"]["DOCKER_HOST"] == "tcp://docker-socket-proxy:2375"
    assert "cloudflare-net" in agent["networks"]
    assert agent["user"] == "65532:65532"
    allowed = {key for key, value in proxy["environment"].items() if str(value) == "1"}
    # What replacing cloudflared and watching containers needs, and nothing like exec or volumes.
    assert {"CONTAINERS", "EVENTS", "NETWORKS", "IMAGES", "POST"} <= allowed
    assert not {"EXEC", "VOLUMES", "SWARM", "SERVICES"} & allowed
    assert all(volume.endswith(":ro") for volume in proxy["volumes"])
    networks = compose["networks"]
    # The agent's CLOUDFLARED_NETWORK_NAME, cloudflare-net unless set: the network the agent's cloudflared joins.
    assert networks["cloudflare-net"] == {"name": "${CLOUDFLARED_NETWORK_NAME:-cloudflare-net}", "external": True}
    assert networks["agent-internal"]["internal"] is True


def test_agent_container_is_locked_down(compose: dict[str, Any]) -> None:
    agent = compose["services"]["agent"]
    assert agent["cap_drop"] == ["ALL"], "the agent needs no Linux capability (it talks to Docker over TCP)"
    assert not agent.get("cap_add"), "no capability may be added back"
    assert "no-new-privileges:true" in agent["security_opt"]
    assert agent["read_only"] is True
    # Only Python's temporary files need a writable place besides the state volume.
    assert [mount.split(":")[0] for mount in agent["tmpfs"]] == ["/tmp"]
    assert agent["volumes"] == ["agent-data:/app/data"] and agent["environment"]["AGENT_DATA_DIR"] == "/app/data"
    assert agent["user"] == "65532:65532"
    assert not agent.get("privileged") and agent.get("network_mode") != "host" and not agent.get("pid")
    assert not any("docker.sock" in volume for volume in agent["volumes"]), "the socket goes through the proxy only"


def test_socket_proxy_settings_are_the_reviewed_minimum(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["docker-socket-proxy"]
    # Pinned: the env flags are that image's contract (each flag one API path prefix).
    assert proxy["image"] == "tecnativa/docker-socket-proxy:v0.4.1"
    flags = {key: str(value) for key, value in proxy["environment"].items()}
    allowed = {key for key, value in flags.items() if value == "1"}
    assert allowed == {"CONTAINERS", "EVENTS", "NETWORKS", "IMAGES", "POST", "PING", "VERSION", "INFO"}
    # Everything else that grants host access is off, or (the image's default) absent.
    for dangerous in ("EXEC", "VOLUMES", "SERVICES", "SWARM", "BUILD", "COMMIT", "PLUGINS", "SYSTEM", "AUTH"):
        assert flags.get(dangerous, "0") == "0", f"{dangerous} must stay off"
    assert "no-new-privileges:true" in proxy["security_opt"]
    assert proxy["read_only"] is True
    assert sorted(mount.split(":")[0] for mount in proxy["tmpfs"]) == ["/run", "/tmp"]
    assert proxy["volumes"] == ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    assert proxy["networks"] == ["agent-internal"], "reachable only by the agent, on an internal network"
    assert "ports" not in proxy, "the Docker API must never be published on the host"
    assert compose["networks"]["agent-internal"]["internal"] is True
    # The compose file says what the proxy does not filter (request bodies), and where that is documented.
    text = (ROOT / "compose.yaml").read_text()
    assert "never by request body" in text and "docs/security.md" in text


def test_every_network_and_volume_used_is_declared(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for network in service.get("networks", []):
            assert network in compose["networks"], f"{name} uses undeclared network {network}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("/"):
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_required_variables_are_documented(compose: dict[str, Any]) -> None:
    text = (ROOT / "compose.yaml").read_text()
    documented = (ROOT / "docs" / "configuration.md").read_text()
    internal = {"REDIS_PASSWORD", "FLAREPORT_IMAGE", "FLAREPORT_AGENT_IMAGE", "FLAREPORT_API_PORTS"}
    for variable in set(re.findall(r"\$\{([A-Z_]+)", text)) - internal:
        assert f"`{variable}`" in documented, f"{variable} is used in compose.yaml but not in docs/configuration.md"


def test_a_generated_admin_password_goes_to_a_private_file_on_a_volume(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    path = api["environment"]["FLAREPORT_ADMIN_PASSWORD_FILE"]
    directory = path.rsplit("/", 1)[0]
    assert any(volume.endswith(":" + directory) for volume in api["volumes"]), "the read-only root cannot hold it"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'install -d -m 0700 -o "${{UID}}" -g "${{GID}}" {directory}' in dockerfile, "owned by the API's user"


def test_control_plane_image_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG UID=65532$", dockerfile, re.M)
    assert re.search(r"^ARG GID=65532$", dockerfile, re.M)
    assert re.search(r"^USER \$\{UID\}:\$\{GID\}$", dockerfile, re.M)
    assert 'ENTRYPOINT ["flareport"]' in dockerfile


def test_agent_guarded_profile_puts_the_socket_guard_alone_in_front_of_the_socket(compose: dict[str, Any]) -> None:
    services = compose["services"]
    guard, agent = services["socket-guard"], services["agent-guarded"]
    assert guard["profiles"] == ["agent-guarded"] and agent["profiles"] == ["agent-guarded"]
    assert guard["command"][0] == "socket-guard" and "tcp:0.0.0.0:2375" in guard["command"]
    assert guard["image"].startswith("${FLAREPORT_IMAGE")
    assert guard["environment"]["CLOUDFLARED_IMAGE"] == services["agent"]["environment"]["CLOUDFLARED_IMAGE"]
    assert guard["volumes"] == ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    assert guard["cap_drop"] == ["ALL"] and "no-new-privileges:true" in guard["security_opt"]
    assert guard["read_only"] is True and guard["networks"] == ["agent-internal"] and not guard.get("ports")
    # The guarded agent is the locked-down agent, pointed at the guard; the socket is mounted into the guard only.
    assert agent["environment"]["DOCKER_HOST"] == "tcp://socket-guard:2375"
    assert agent["depends_on"] == {"socket-guard": {"condition": "service_healthy"}}
    for key in ("user", "cap_drop", "security_opt", "read_only", "tmpfs", "volumes", "networks"):
        assert agent[key] == services["agent"][key], key
    mounted = [
        name for name, service in services.items() if any("docker.sock" in v for v in service.get("volumes", []))
    ]
    assert sorted(mounted) == ["docker-socket-proxy", "socket-guard"]


def test_ha_profile_adds_a_replica_and_three_sentinels_with_a_majority_quorum(compose: dict[str, Any]) -> None:
    services = compose["services"]
    replica = services["redis-replica"]
    assert replica["profiles"] == ["ha"]
    command = " ".join(replica["command"])
    assert "--replicaof redis 6379" in command and '--masterauth "$$REDIS_PASSWORD"' in command
    # The primary must be able to follow the new primary once it comes back as a replica.
    assert '--masterauth "$$REDIS_PASSWORD"' in " ".join(services["redis"]["command"])
    sentinels = [services[f"sentinel-{n}"] for n in (1, 2, 3)]
    assert all(s["profiles"] == ["ha"] for s in sentinels)
    assert len({s["volumes"][0] for s in sentinels}) == 3, "each Sentinel rewrites a config file of its own"
    for sentinel in sentinels:
        script = " ".join(sentinel["command"])
        assert "sentinel monitor mymaster redis 6379 2" in script, "quorum 2 of 3: a majority decides"
        assert "--sentinel" in script
    # Off by default: the services use REDIS_URL's one Redis unless REDIS_SENTINELS is set.
    for name in CONTROL_PLANE:
        assert services[name]["environment"]["REDIS_SENTINELS"] == "${REDIS_SENTINELS:-}"
    assert not {"redis-replica", "sentinel-1"} & {n for n, s in services.items() if "profiles" not in s}
