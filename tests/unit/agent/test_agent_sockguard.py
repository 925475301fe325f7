"""The socket guard's decisions (``sockguard.py``), without an engine: routes, create bodies, answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flareport_agent.sockguard import (
    MAX_BODY,
    Policy,
    Refused,
    check_container_create,
    check_network_create,
    owned,
    redact_inspect,
    route,
)
from flareport_agent.sockguard_server import Endpoint, parse_endpoint

IMAGE = "cloudflare/cloudflared:2025.9.0"
POLICY = Policy(image=IMAGE)
OWNER = {"flareport.managed": "cloudflared"}


def agent_body(**changes: Any) -> dict[str, Any]:
    """What the agent's ``containers.run`` sends (docker SDK 7), changed by ``changes`` (``HostConfig`` merged)."""
    body: dict[str, Any] = {
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Env": ["TUNNEL_TOKEN=secret-token"],
        "Cmd": ["tunnel", "--no-autoupdate", "run"],
        "Image": IMAGE,
        "NetworkDisabled": False,
        "HostConfig": {"NetworkMode": "cloudflare-net", "RestartPolicy": {"Name": "unless-stopped"}},
        "NetworkingConfig": {"cloudflare-net": None},
        "Labels": {**OWNER, "flareport.tunnel_id": "tun-1", "flareport.config_hash": "abc"},
    }
    host_config = changes.pop("HostConfig", {})
    if isinstance(host_config, dict):
        body["HostConfig"].update(host_config)
    else:
        body["HostConfig"] = host_config
    body.update(changes)
    return body


def create(body: dict[str, Any] | bytes) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    forwarded: dict[str, Any] = json.loads(check_container_create(POLICY, data))
    return forwarded


def refused(body: dict[str, Any] | bytes) -> str:
    with pytest.raises(Refused) as caught:
        create(body)
    assert caught.value.status in (403, 413)
    return caught.value.message


# --- routes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "kind", "forwarded"),
    [
        ("GET", "/_ping", [], "forward", "/_ping"),
        ("HEAD", "/_ping", [], "forward", "/_ping"),
        ("GET", "/version", [], "forward", "/version"),
        ("GET", "/v1.41/info", [], "forward", "/v1.41/info"),
        ("GET", "/v1.41/events", [("filters", '{"type":["container"]}')], "forward", "/v1.41/events"),
        ("GET", "/v1.44/containers/json", [("all", "1"), ("limit", "-1"), ("trunc_cmd", "0")], "forward", None),
        ("GET", "/v1.41/containers/abc123/json", [], "inspect", "/v1.41/containers/abc123/json"),
        ("GET", "/v1.41/images/cloudflare/cloudflared:2025.9.0/json", [], "forward", None),
        ("GET", "/v1.41/images/localhost/x@sha256:00ff/json", [], "forward", None),
        ("GET", "/v1.41/networks", [("filters", '{"name":["cloudflare-net"]}')], "forward", "/v1.41/networks"),
        ("GET", "/v1.41/networks/cloudflare-net", [], "forward", "/v1.41/networks/cloudflare-net"),
        ("POST", "/v1.41/networks/create", [], "create_network", "/v1.41/networks/create"),
        ("POST", "/v1.41/containers/create", [("name", "flareport-cloudflared")], "create_container", None),
        ("POST", "/v1.41/containers/create", [], "create_container", "/v1.41/containers/create"),
        ("POST", "/v1.41/images/create", [("fromImage", "cloudflare/cloudflared"), ("tag", "2025.9.0")], "pull", None),
        ("POST", "/v1.41/containers/abc/start", [], "owned", "/v1.41/containers/abc/start"),
        ("POST", "/v1.41/containers/abc/stop", [("t", "10")], "owned", None),
        ("POST", "/v1.41/containers/abc/restart", [("t", "10")], "owned", None),
        ("POST", "/v1.41/containers/abc/kill", [("signal", "SIGTERM")], "owned", None),
        ("DELETE", "/v1.41/containers/abc", [("v", "False"), ("link", "False"), ("force", "True")], "owned", None),
    ],
)
def test_the_agents_requests_are_routed(
    method: str, path: str, query: list[tuple[str, str]], kind: str, forwarded: str | None
) -> None:
    allowed = route(POLICY, method, path, query)
    assert allowed.kind == kind
    if forwarded is not None:
        assert allowed.path == forwarded
    if kind == "owned":
        assert allowed.target == "abc"


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("POST", "/v1.41/containers/abc/exec", []),
        ("POST", "/v1.41/exec/abc/start", []),
        ("POST", "/v1.41/exec/abc/resize", []),
        ("GET", "/v1.41/containers/abc/archive", [("path", "/etc")]),
        ("PUT", "/v1.41/containers/abc/archive", [("path", "/")]),
        ("HEAD", "/v1.41/containers/abc/archive", [("path", "/")]),
        ("GET", "/v1.41/containers/abc/logs", [("stdout", "1")]),
        ("POST", "/v1.41/containers/abc/attach", [("stream", "1")]),
        ("GET", "/v1.41/containers/abc/attach/ws", []),
        ("GET", "/v1.41/containers/abc/export", []),
        ("GET", "/v1.41/containers/abc/top", []),
        ("POST", "/v1.41/containers/abc/update", []),
        ("POST", "/v1.41/containers/abc/rename", [("name", "x")]),
        ("POST", "/v1.41/containers/abc/pause", []),
        ("POST", "/v1.41/containers/abc/wait", []),
        ("POST", "/v1.41/containers/prune", []),
        ("POST", "/v1.41/commit", [("container", "abc")]),
        ("POST", "/v1.41/build", []),
        ("POST", "/v1.41/images/load", []),
        ("POST", "/v1.41/images/abc/tag", [("repo", "cloudflare/cloudflared"), ("tag", "2025.9.0")]),
        ("POST", "/v1.41/images/abc/push", []),
        ("DELETE", "/v1.41/images/abc", []),
        ("GET", "/v1.41/images/json", []),
        ("POST", "/v1.41/volumes/create", []),
        ("GET", "/v1.41/volumes", []),
        ("DELETE", "/v1.41/networks/cloudflare-net", []),
        ("POST", "/v1.41/networks/cloudflare-net/connect", []),
        ("POST", "/v1.41/networks/prune", []),
        ("POST", "/v1.41/swarm/init", []),
        ("GET", "/v1.41/services", []),
        ("GET", "/v1.41/secrets", []),
        ("GET", "/v1.41/configs", []),
        ("POST", "/v1.41/plugins/pull", []),
        ("POST", "/v1.41/session", []),
        ("POST", "/v1.41/auth", []),
        ("GET", "/v1.41/system/df", []),
        ("GET", "/v1.41/distribution/x/json", []),
        ("POST", "/v4.0.0/libpod/containers/create", []),
        ("GET", "/libpod/_ping", []),
        ("POST", "/v1.23/containers/abc/start", []),  # before 1.24, a start took a HostConfig body
        ("GET", "/v1.12/containers/json", []),
        ("POST", "/_ping", []),
        ("DELETE", "/v1.41/containers/abc/json", []),
        ("GET", "/v1.41/containers/abc/../../exec/x/json", []),
        ("GET", "/v1.41/images/../containers/x/json", []),
        ("GET", "/v1.41/images//json", []),
        ("GET", "/v1.41/containers/abc%2Fexec/json", []),
        ("GET", "/v1.41//containers/json", []),
        ("GET", "", []),
        ("GET", "/", []),
    ],
)
def test_everything_else_is_refused(method: str, path: str, query: list[tuple[str, str]]) -> None:
    with pytest.raises(Refused):
        route(POLICY, method, path, query)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1.41/images/create", [("fromImage", "attacker/miner"), ("tag", "1")]),
        ("/v1.41/images/create", [("fromImage", "cloudflare/cloudflared"), ("tag", "latest")]),
        ("/v1.41/images/create", [("fromImage", "cloudflare/cloudflared")]),
        ("/v1.41/images/create", [("fromImage", "evil.example/cloudflare/cloudflared"), ("tag", "2025.9.0")]),
        ("/v1.41/images/create", [("fromImage", "cloudflare/cloudflared"), ("tag", "sha256:" + "0" * 64)]),
        ("/v1.41/images/create", [("fromSrc", "-"), ("repo", "cloudflare/cloudflared"), ("tag", "2025.9.0")]),
        ("/v1.41/images/create", [("fromSrc", "http://evil/x.tar"), ("fromImage", IMAGE)]),
        ("/v1.41/images/create", [("fromImage", IMAGE), ("changes", "ENTRYPOINT x")]),
        ("/v1.41/images/create", [("fromImage", IMAGE), ("fromImage", "attacker/miner")]),
        ("/v1.41/images/create", []),
        ("/v1.41/containers/create", [("name", "other")]),
        ("/v1.41/containers/create", [("name", "flareport-cloudflared"), ("platform", "linux/amd64")]),
        ("/v1.41/containers/abc/stop", [("t", "10; rm")]),
        ("/v1.41/containers/abc/kill", [("signal", "x" * 40)]),
        ("/v1.41/containers/abc/start", [("detachKeys", "ctrl-p")]),
    ],
)
def test_query_parameters_are_checked(path: str, query: list[tuple[str, str]]) -> None:
    with pytest.raises(Refused):
        route(POLICY, "POST", path, query)


def test_the_configured_image_may_be_pulled_in_its_spellings() -> None:
    for image, tag in [
        ("cloudflare/cloudflared", "2025.9.0"),
        ("docker.io/cloudflare/cloudflared", "2025.9.0"),
        ("index.docker.io/cloudflare/cloudflared:2025.9.0", None),
    ]:
        query = [("fromImage", image)] + ([("tag", tag)] if tag else [])
        assert route(POLICY, "POST", "/v1.41/images/create", query).kind == "pull"
    digest = "sha256:" + "a" * 64
    pinned = Policy(image=f"cloudflare/cloudflared@{digest}")
    allowed = route(pinned, "POST", "/images/create", [("fromImage", "cloudflare/cloudflared"), ("tag", digest)])
    assert allowed.kind == "pull"


def test_a_query_is_rebuilt_from_what_was_checked() -> None:
    allowed = route(POLICY, "DELETE", "/v1.41/containers/abc", [("force", "True"), ("v", "False")])
    assert allowed.url() == "/v1.41/containers/abc?force=True&v=False"
    with pytest.raises(Refused, match="link"):
        route(POLICY, "DELETE", "/v1.41/containers/abc", [("link", "True")])
    with pytest.raises(Refused, match="twice"):
        route(POLICY, "GET", "/v1.41/containers/json", [("all", "1"), ("all", "0")])


# --- container create --------------------------------------------------------------------------------------------


def test_the_agents_own_body_is_forwarded_as_it_was_checked() -> None:
    body = agent_body()
    assert create(body) == body
    # The CLI's shapes of the same container.
    assert create(agent_body(NetworkingConfig={"EndpointsConfig": {"cloudflare-net": {}}}))
    assert create(agent_body(NetworkingConfig=None, HostConfig={"NetworkMode": "default"}))
    assert create(agent_body(HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}))
    assert create(agent_body(Hostname="", Domainname="", User="", WorkingDir="", Entrypoint=None, Volumes=None))
    assert create(agent_body(Image="docker.io/cloudflare/cloudflared:2025.9.0", Env=None, Cmd=None))
    assert create(agent_body(HostConfig={"Privileged": False, "Binds": None, "CapAdd": None, "PidMode": ""}))


HOST_CONFIG_ATTACKS: list[tuple[str, Any]] = [
    ("Privileged", True),
    ("Binds", ["/:/host"]),
    ("Binds", []),
    ("Mounts", [{"Type": "bind", "Source": "/", "Target": "/host"}]),
    ("Mounts", [{"Type": "volume", "Source": "x", "Target": "/x", "VolumeOptions": {"DriverConfig": {}}}]),
    ("VolumesFrom", ["other"]),
    ("VolumeDriver", "local"),
    ("CapAdd", ["SYS_ADMIN"]),
    ("CapAdd", ["ALL"]),
    ("CapDrop", []),
    ("Devices", [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]),
    ("DeviceCgroupRules", ["a *:* rwm"]),
    ("DeviceRequests", [{"Driver": "nvidia", "Count": -1}]),
    ("PidMode", "host"),
    ("PidMode", "container:other"),
    ("IpcMode", "host"),
    ("IpcMode", "container:other"),
    ("UsernsMode", "host"),
    ("UTSMode", "host"),
    ("CgroupnsMode", "host"),
    ("Cgroup", "host"),
    ("CgroupParent", "/"),
    ("NetworkMode", "host"),
    ("NetworkMode", "container:other"),
    ("NetworkMode", "bridge-of-someone-else"),
    ("SecurityOpt", ["seccomp=unconfined"]),
    ("SecurityOpt", ["apparmor=unconfined"]),
    ("SecurityOpt", ["label=disable"]),
    ("SecurityOpt", ["no-new-privileges=false"]),
    ("MaskedPaths", []),
    ("ReadonlyPaths", []),
    ("Sysctls", {"kernel.core_pattern": "|/host/x"}),
    ("Runtime", "runc-privileged"),
    ("PortBindings", {"22/tcp": [{"HostIp": "", "HostPort": "22"}]}),
    ("PortBindings", {"8080/tcp": [{"HostPort": "8080"}]}),
    ("PublishAllPorts", True),
    ("ExtraHosts", ["master:10.0.0.1"]),
    ("Links", ["db:db"]),
    ("Dns", ["1.2.3.4"]),
    ("LogConfig", {"Type": "syslog", "Config": {"syslog-address": "tcp://evil:514"}}),
    ("OomKillDisable", True),
    ("PidsLimit", -1),
    ("Ulimits", [{"Name": "nofile", "Soft": 1048576, "Hard": 1048576}]),
    ("Init", True),
    ("GroupAdd", ["0"]),
    ("Tmpfs", {"/x": "exec"}),
    ("RestartPolicy", {"Name": "always-and-forever"}),
    ("RestartPolicy", {"Name": "always", "MaximumRetryCount": -1}),
    ("RestartPolicy", {"Name": "always", "Extra": 1}),
    ("RestartPolicy", "always"),
    ("ContainerIDFile", "/etc/passwd"),
    ("SomeFutureField", {"x": 1}),
    ("SomeFutureFlag", True),
]


@pytest.mark.parametrize(("key", "value"), HOST_CONFIG_ATTACKS, ids=[f"{k}={v!r}"[:60] for k, v in HOST_CONFIG_ATTACKS])
def test_any_host_config_the_agent_never_sends_is_refused_naming_the_field(key: str, value: Any) -> None:
    message = refused(agent_body(HostConfig={key: value}))
    assert f"HostConfig.{key}" in message
    # The message names the field, never a value (a body may hold a token).
    assert json.dumps(value) not in message or json.dumps(value) in ("true", "[]", "{}", "-1")


CONFIG_ATTACKS: list[tuple[str, Any, str]] = [
    ("Image", "attacker/miner:1", "Image"),
    ("Image", "cloudflare/cloudflared:latest", "Image"),
    ("Image", "cloudflare/cloudflared", "Image"),
    ("Image", "evil.example/cloudflare/cloudflared:2025.9.0", "Image"),
    ("Image", "cloudflare/cloudflared@sha256:" + "0" * 64, "Image"),
    ("Image", "sha256:" + "0" * 64, "Image"),
    ("Image", None, "Image"),
    ("Image", ["cloudflare/cloudflared:2025.9.0"], "Image"),
    ("Labels", {}, "Labels"),
    ("Labels", None, "Labels"),
    ("Labels", {"flareport.managed": "cloudflared2"}, "Labels"),
    ("Labels", {"Flareport.managed": "cloudflared"}, "Labels"),
    ("Labels", {**OWNER, "x": 1}, "Labels"),
    ("Env", ["TUNNEL_TOKEN=x", "LD_PRELOAD=/x.so"], "Env"),
    ("Env", ["PATH=/host/bin"], "Env"),
    ("Env", "TUNNEL_TOKEN=x", "Env"),
    ("Cmd", ["sh", "-c", "id"], "Cmd"),
    ("Cmd", ["tunnel", "--no-autoupdate", "run", "--url", "http://evil"], "Cmd"),
    ("Entrypoint", ["sh"], "Entrypoint"),
    ("Entrypoint", [], "Entrypoint"),
    ("User", "0", "User"),
    ("Volumes", {"/data": {}}, "Volumes"),
    ("Healthcheck", {"Test": ["CMD", "x"]}, "Healthcheck"),
    ("ExposedPorts", {"22/tcp": {}}, "ExposedPorts"),
    ("Tty", True, "Tty"),
    ("OpenStdin", True, "OpenStdin"),
    ("NetworkDisabled", "yes", "NetworkDisabled"),
    ("HostConfig", [], "HostConfig"),
    ("HostConfig", "privileged", "HostConfig"),
    ("NetworkingConfig", {"EndpointsConfig": {"host": {}}}, "NetworkingConfig.EndpointsConfig"),
    ("NetworkingConfig", {"EndpointsConfig": {"cloudflare-net": {"IPAddress": "10.0.0.1"}}}, "EndpointsConfig"),
    ("NetworkingConfig", {"EndpointsConfig": {"cloudflare-net": {"Links": ["db"]}}}, "EndpointsConfig"),
    ("NetworkingConfig", {"EndpointsConfig": []}, "EndpointsConfig"),
    ("NetworkingConfig", {"other-net": None}, "NetworkingConfig.other-net"),
    ("NetworkingConfig", {"cloudflare-net": {"Aliases": ["x"]}}, "NetworkingConfig.cloudflare-net"),
    ("NetworkingConfig", "host", "NetworkingConfig"),
]


@pytest.mark.parametrize(
    ("key", "value", "named"), CONFIG_ATTACKS, ids=[f"{k}={v!r}"[:60] for k, v, _ in CONFIG_ATTACKS]
)
def test_any_config_the_agent_never_sends_is_refused_naming_the_field(key: str, value: Any, named: str) -> None:
    assert named in refused(agent_body(**{key: value}))


def test_no_labels_and_no_image_are_refused() -> None:
    body = agent_body()
    del body["Labels"]
    assert "Labels" in refused(body)
    body = agent_body()
    del body["Image"]
    assert "Image" in refused(body)


def test_keys_are_matched_as_the_engine_matches_them() -> None:
    # Go decodes keys case-insensitively: a lower-case field is the same field, and is checked as such.
    assert "HostConfig.privileged" in refused(agent_body(HostConfig={"privileged": True}))
    lower = agent_body()
    lower["hostconfig"] = lower.pop("HostConfig")
    lower["hostconfig"]["privileged"] = True
    assert "HostConfig.privileged" in refused(lower)
    # The same field twice, by case or verbatim (the engine lets the later one win): refused, not guessed at.
    assert "twice" in refused(json.dumps({**agent_body(), "hostconfig": {"Privileged": True}}).encode())
    twice = json.dumps(agent_body(HostConfig={"Privileged": False})).replace(
        '"Privileged": false', '"Privileged": false, "Privileged": true'
    )
    assert "twice" in refused(twice.encode())
    labels_twice = json.dumps(agent_body()).replace(
        '"flareport.managed": "cloudflared"', '"flareport.managed": "cloudflared", "FLAREPORT.MANAGED": "x"'
    )
    assert "twice" in refused(labels_twice.encode())
    # Go folds U+017F to s and U+212A (Kelvin) to k: a non-ASCII key is refused.
    assert "ASCII" in refused(json.dumps(agent_body(HostConfig={"Mount\u017f": [{"Source": "/"}]})).encode())
    assert "ASCII" in refused(json.dumps(agent_body(HostConfig={"\u212aernelMemory": 1})).encode())


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"x"',
        b"{",
        b'{"Image": NaN}',
        b'{"Image": Infinity}',
        b"\xff\xfe{}",
        b'\xef\xbb\xbf{"Image": "cloudflare/cloudflared:2025.9.0"}',
        b" " * (MAX_BODY + 1),
    ],
    ids=["empty", "null", "list", "string", "truncated", "nan", "infinity", "utf16", "bom", "too-large"],
)
def test_a_body_that_is_not_one_json_object_is_refused(body: bytes) -> None:
    refused(body)


def test_a_too_large_body_is_413() -> None:
    with pytest.raises(Refused) as caught:
        check_container_create(POLICY, b" " * (MAX_BODY + 1))
    assert caught.value.status == 413


def test_a_pinned_image_is_matched_by_digest() -> None:
    digest = "sha256:" + "b" * 64
    pinned = Policy(image=f"cloudflare/cloudflared@{digest}")
    body = json.dumps(agent_body(Image=f"docker.io/cloudflare/cloudflared@{digest}")).encode()
    assert check_container_create(pinned, body)
    with pytest.raises(Refused, match="Image"):
        check_container_create(pinned, json.dumps(agent_body()).encode())


_keys = st.text(alphabet=st.characters(min_codepoint=65, max_codepoint=122), min_size=1, max_size=20)
_values = st.one_of(
    st.booleans().filter(bool),
    st.integers(),
    st.text(min_size=1, max_size=10),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


@given(key=_keys, value=_values)
def test_any_other_host_config_field_with_a_value_is_refused(key: str, value: Any) -> None:
    if key.lower() in ("networkmode", "restartpolicy"):
        return
    with pytest.raises(Refused, match=r"HostConfig|not ASCII"):
        create(agent_body(HostConfig={key: value}))


@given(key=_keys, value=_values)
def test_any_other_top_level_field_with_a_value_is_refused(key: str, value: Any) -> None:
    known = {"image", "labels", "env", "cmd", "hostconfig", "networkingconfig"}
    if key.lower() in known or (value is False):
        return
    body = agent_body()
    if any(existing.lower() == key.lower() for existing in body):
        body = {k: v for k, v in body.items() if k.lower() != key.lower()}
    body[key] = value
    with pytest.raises(Refused):
        create(body)


# --- network create ----------------------------------------------------------------------------------------------


def network(body: dict[str, Any]) -> dict[str, Any]:
    forwarded: dict[str, Any] = json.loads(check_network_create(POLICY, json.dumps(body).encode()))
    return forwarded


def test_the_agents_network_is_created() -> None:
    assert network({"Name": "cloudflare-net", "Driver": "bridge"}) == {"Name": "cloudflare-net", "Driver": "bridge"}
    assert network({"Name": "cloudflare-net", "Driver": "bridge", "CheckDuplicate": True, "Options": None})
    assert network({"Name": "cloudflare-net"})


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"Name": "other-net", "Driver": "bridge"}, "Name"),
        ({"Driver": "bridge"}, "Name"),
        ({"Name": "cloudflare-net", "Driver": "macvlan"}, "Driver"),
        ({"Name": "cloudflare-net", "Driver": "host"}, "Driver"),
        ({"Name": "cloudflare-net", "Options": {"com.docker.network.bridge.name": "eth0"}}, "Options"),
        ({"Name": "cloudflare-net", "IPAM": {"Config": [{"Subnet": "192.168.1.0/24"}]}}, "IPAM"),
        ({"Name": "cloudflare-net", "Internal": True}, "Internal"),
        ({"Name": "cloudflare-net", "Attachable": True}, "Attachable"),
        ({"Name": "cloudflare-net", "Ingress": True}, "Ingress"),
        ({"Name": "cloudflare-net", "ConfigFrom": {"Network": "x"}}, "ConfigFrom"),
        ({"Name": "cloudflare-net", "Labels": {"x": "y"}}, "Labels"),
        ({"Name": "cloudflare-net", "EnableIPv6": True}, "EnableIPv6"),
        ({"Name": "cloudflare-net", "name": "other"}, "twice"),
    ],
)
def test_any_other_network_is_refused(body: dict[str, Any], named: str) -> None:
    with pytest.raises(Refused) as caught:
        network(body)
    assert named in caught.value.message


# --- answers -----------------------------------------------------------------------------------------------------


def inspect(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "Id": "f" * 64,
        "Path": "/app/server",
        "Args": ["--password", "hunter2"],
        "Config": {
            "Env": ["DB_PASSWORD=hunter2"],
            "Cmd": ["--password", "hunter2"],
            "Entrypoint": ["/app/server"],
            "Labels": labels,
            "Image": "x",
        },
        "State": {"Status": "running"},
    }


def test_inspect_answers_lose_environment_and_others_command_lines() -> None:
    other = redact_inspect(POLICY, inspect({"com.example": "x"}))
    assert "hunter2" not in json.dumps(other)
    assert other["Config"]["Labels"] == {"com.example": "x"} and other["State"] == {"Status": "running"}
    mine = redact_inspect(POLICY, inspect(dict(OWNER)))
    assert mine["Config"]["Env"] == [] and mine["Config"]["Cmd"] == ["--password", "hunter2"]
    assert redact_inspect(POLICY, []) == []


def test_ownership_is_the_exact_label() -> None:
    assert owned(POLICY, inspect(dict(OWNER)))
    assert not owned(POLICY, inspect({"flareport.managed": "cloudflared "}))
    assert not owned(POLICY, inspect({"flareport.managed.x": "cloudflared"}))
    assert not owned(POLICY, {"Config": None})
    assert not owned(POLICY, "x")


# --- the command's endpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("unix:/run/guard/docker.sock", Endpoint("unix", "/run/guard/docker.sock")),
        ("unix:///var/run/docker.sock", Endpoint("unix", "/var/run/docker.sock")),
        ("tcp:0.0.0.0:2375", Endpoint("tcp", "0.0.0.0", 2375)),
        ("tcp://docker-socket-proxy:2375", Endpoint("tcp", "docker-socket-proxy", 2375)),
        ("http://127.0.0.1:2375/", Endpoint("tcp", "127.0.0.1", 2375)),
        ("tcp:[::1]:2375", Endpoint("tcp", "::1", 2375)),
    ],
)
def test_endpoints_are_parsed(value: str, expected: Endpoint) -> None:
    assert parse_endpoint(value, "--listen") == expected


@pytest.mark.parametrize("value", ["2375", "unix:", "unix:///", "tcp:host", "tcp:host:port", "tcp::2375", "ftp:x:1"])
def test_bad_endpoints_are_refused_naming_the_option(value: str) -> None:
    with pytest.raises(ValueError, match=r"^--listen: "):
        parse_endpoint(value, "--listen")
