"""The socket guard's decisions: which Docker API requests the agent may make, and in what shape (pure, no I/O).

``flareport socket-guard`` (``sockguard_server.py``) sits between the agent and the Docker socket. Unlike a proxy
that filters by path only, it reads the body of every request that can change the host and lets through only the
requests the agent makes, in the shape it makes them:

- reads: ``/_ping``, ``/version``, ``/info``, ``/events``, ``/containers/json``, ``/containers/{id}/json``,
  ``/images/{name}/json``, ``/networks``, ``/networks/{id}``; query parameters other than the ones these take are
  refused. A container's inspect answer loses ``Config.Env`` (other containers' secrets, and cloudflared's token),
  and for containers the agent does not own also their command line (``Path``, ``Args``, ``Config.Cmd``,
  ``Config.Entrypoint``): the agent needs labels and state only;
- ``POST /containers/create``: only the agent's cloudflared (``check_container_create``);
- ``POST /networks/create``: only the configured network, bridge driver, nothing else;
- ``POST /images/create``: only a pull of the configured image;
- ``POST /containers/{id}/(start|stop|restart|kill)`` and ``DELETE /containers/{id}``: only for a container carrying
  the ownership label (the server inspects it first and then acts on its full id, so a name cannot be swapped in
  between), with an empty body (API versions before 1.24 accepted a ``HostConfig`` in a start's body);
- everything else (exec, attach, archive, logs, volumes, build, commit, swarm, plugins, secrets, the libpod API...):
  refused.

A refusal is ``Refused`` (403, a message naming the field, never a value). What the guard forwards is rebuilt from
what it checked: the path from its parsed parts, the query from the allowed parameters, a JSON body re-serialised
from the parsed and checked object. Docker (and Podman) decode JSON keys case-insensitively and let a later key
win, so an object with a key twice, or two keys differing only in case, or a non-ASCII key (Go folds U+017F to
``s`` and U+212A to ``k``) is refused rather than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from flareport_agent.cloudflared import COMMAND, CONTAINER_NAME, MANAGED_LABEL, MANAGED_VALUE, NETWORK
from flareport_agent.images import allowed

MAX_BODY = 64 * 1024
MAX_INSPECT = 8 * 1024 * 1024
# API versions before 1.24 took a HostConfig in the body of POST /containers/{id}/start.
MIN_API_VERSION = (1, 24)
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")

_VERSION = re.compile(r"^/v(\d{1,2})\.(\d{1,3})(/.*)$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,511}$")
_TRUE = ("1", "true", "True", "TRUE")
_FALSE = ("0", "false", "False", "FALSE")


class Refused(Exception):
    """A request the guard does not forward: 403 with ``{"message": ...}``."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Policy:
    image: str  # the agent's CLOUDFLARED_IMAGE
    network: str = NETWORK
    container_name: str = CONTAINER_NAME
    owner_label: tuple[str, str] = (MANAGED_LABEL, MANAGED_VALUE)
    command: tuple[str, ...] = COMMAND
    env_names: tuple[str, ...] = ("TUNNEL_TOKEN",)


@dataclass(frozen=True, slots=True)
class Route:
    """What to do with an allowed request.

    ``kind``: ``forward`` (pass on, stream the answer), ``inspect`` (pass on, redact the answer),
    ``create_container`` / ``create_network`` (check the body first), ``pull`` (pass on, stream),
    ``owned`` (inspect ``target`` first; forward to ``action`` of its full id only if it carries the label).
    """

    kind: str
    method: str
    path: str  # rebuilt, with the request's version prefix
    query: str  # rebuilt from the allowed parameters
    target: str | None = None  # the container named in the path (owned actions)
    action: str | None = None  # start, stop, restart, kill, delete

    def url(self, path: str | None = None) -> str:
        wanted = self.path if path is None else path
        return f"{wanted}?{self.query}" if self.query else wanted


def _params(query: Sequence[tuple[str, str]], allowed_names: Mapping[str, Callable[[str], bool] | None]) -> str:
    seen: set[str] = set()
    kept: list[tuple[str, str]] = []
    for name, value in query:
        if name in seen:
            raise Refused(f"query parameter {name!r} given twice")
        seen.add(name)
        if name not in allowed_names:
            raise Refused(f"query parameter {name!r} is not allowed here")
        check = allowed_names[name]
        if check is not None and not check(value):
            raise Refused(f"query parameter {name!r} has a value the agent never sends")
        kept.append((name, value))
    return urlencode(kept)


def _any(_: str) -> bool:
    return True


def _boolean(value: str) -> bool:
    return value in _TRUE or value in _FALSE


def _false(value: str) -> bool:
    return value in _FALSE or value == ""


def _integer(value: str) -> bool:
    return re.fullmatch(r"-?\d{1,6}", value) is not None


def _signal(value: str) -> bool:
    return re.fullmatch(r"[A-Z0-9]{1,12}", value) is not None


_ACTION_PARAMS: dict[str, dict[str, Callable[[str], bool] | None]] = {
    "start": {},
    "stop": {"t": _integer, "signal": _signal},
    "restart": {"t": _integer, "signal": _signal},
    "kill": {"signal": _signal},
}


def route(policy: Policy, method: str, path: str, query: Sequence[tuple[str, str]]) -> Route:
    """The route of an allowed request; ``Refused`` for anything else. ``path`` is the decoded path."""
    prefix = ""
    match = _VERSION.match(path)
    if match is not None:
        version = (int(match.group(1)), int(match.group(2)))
        if version < MIN_API_VERSION:
            raise Refused(f"API version {version[0]}.{version[1]} is older than the guard accepts (1.24)")
        prefix, path = f"/v{version[0]}.{version[1]}", match.group(3)
    parts = path.split("/")[1:] if path.startswith("/") else []
    if not parts or any(part in ("", ".", "..") for part in parts[:-1]) or "%" in path or "\\" in path:
        raise Refused("path not allowed")
    read = method in ("GET", "HEAD")

    def make(kind: str, rebuilt: str, params: str, target: str | None = None, action: str | None = None) -> Route:
        return Route(kind, method, prefix + rebuilt, params, target, action)

    head = parts[0]
    if read and parts in (["_ping"], ["version"], ["info"]):
        return make("forward", path, _params(query, {}))
    if method == "GET" and parts == ["events"]:
        return make("forward", "/events", _params(query, {"since": _any, "until": _any, "filters": _any}))
    if head == "containers":
        if method == "GET" and parts == ["containers", "json"]:
            listing = {"all": _boolean, "limit": _integer, "size": _boolean, "trunc_cmd": _boolean, "filters": _any}
            return make("forward", "/containers/json", _params(query, listing))
        if method == "POST" and parts == ["containers", "create"]:
            name = _params(query, {"name": lambda value: value.lstrip("/") == policy.container_name})
            return make("create_container", "/containers/create", name)
        if len(parts) >= 2 and _ID.match(parts[1]) and parts[1] not in ("json", "create"):
            target = parts[1]
            if method == "GET" and parts[2:] == ["json"]:
                return make("inspect", f"/containers/{target}/json", _params(query, {"size": _boolean}))
            if method == "DELETE" and len(parts) == 2:
                params = _params(query, {"v": _boolean, "force": _boolean, "link": _false})
                return make("owned", f"/containers/{target}", params, target=target, action="delete")
            if method == "POST" and len(parts) == 3 and parts[2] in ("start", "stop", "restart", "kill"):
                action = parts[2]
                params = _params(query, _ACTION_PARAMS[action])
                return make("owned", f"/containers/{target}/{action}", params, target=target, action=action)
    if head == "images":
        if method == "POST" and parts == ["images", "create"]:
            return make("pull", "/images/create", _pull_params(policy, query))
        if method == "GET" and len(parts) >= 3 and parts[-1] == "json":
            name = "/".join(parts[1:-1])
            if _IMAGE.match(name) and ".." not in name and "//" not in name:
                return make("forward", f"/images/{quote(name, safe='/:')}/json", _params(query, {}))
    if head == "networks":
        if method == "GET" and parts == ["networks"]:
            return make("forward", "/networks", _params(query, {"filters": _any}))
        if method == "POST" and parts == ["networks", "create"]:
            return make("create_network", "/networks/create", _params(query, {}))
        if method == "GET" and len(parts) == 2 and _ID.match(parts[1]):
            return make("forward", f"/networks/{parts[1]}", _params(query, {"verbose": _false, "scope": _any}))
    raise Refused(f"{method} {prefix}{path} is not an API the agent uses")


def _pull_params(policy: Policy, query: Sequence[tuple[str, str]]) -> str:
    params = _params(query, {"fromImage": _any, "tag": _any})
    given = dict(query)
    image = given.get("fromImage")
    if not image:
        raise Refused("POST /images/create: only a pull (fromImage) of the configured image is allowed")
    tag = given.get("tag")
    if tag:
        image = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    if not allowed(image, policy.image):
        raise Refused(f"POST /images/create: fromImage is not the configured image {policy.image}")
    return params


# --- request bodies ---------------------------------------------------------------------------------------------


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    folded: set[str] = set()
    for key, _ in pairs:
        if not key.isascii():
            raise Refused("a JSON key is not ASCII")
        if key.lower() in folded:
            raise Refused(f"JSON key {key!r} appears twice (keys are matched case-insensitively)")
        folded.add(key.lower())
    return dict(pairs)


def parse_body(body: bytes, what: str) -> dict[str, Any]:
    if len(body) > MAX_BODY:
        raise Refused(f"{what}: body larger than {MAX_BODY} bytes", status=413)
    try:
        parsed = json.loads(body.decode("utf-8"), object_pairs_hook=_pairs, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(f"{what}: the body is not a JSON object") from exc
    if not isinstance(parsed, dict):
        raise Refused(f"{what}: the body is not a JSON object")
    return parsed


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _neutral(value: Any) -> bool:
    """A value the engine reads as 'not set' for any field: null, false, an empty string. Not an empty list or
    object: ``MaskedPaths: []`` unmasks every path, where a missing ``MaskedPaths`` keeps the defaults."""
    return value is None or value is False or value == ""


def _folded(obj: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    return {key.lower(): (key, value) for key, value in obj.items()}


def _only(obj: Mapping[str, Any], where: str, rules: Mapping[str, Callable[[Any], bool]]) -> None:
    """Every key of ``obj`` is either in ``rules`` (and passes it) or neutral; refusals name the field."""
    lowered = {name.lower(): check for name, check in rules.items()}
    for key, value in obj.items():
        check = lowered.get(key.lower())
        if check is None:
            if not _neutral(value):
                raise Refused(f"{where}{key} is not allowed (the agent never sets it)")
        elif not check(value):
            raise Refused(f"{where}{key} has a value the agent never sends")


def check_container_create(policy: Policy, body: bytes) -> bytes:
    """The body to forward for ``POST /containers/create``; ``Refused`` naming the first field that is not the
    agent's cloudflared."""
    config = parse_body(body, "POST /containers/create")
    fields = _folded(config)
    image = fields.get("image", ("Image", None))[1]
    if not isinstance(image, str) or not allowed(image, policy.image):
        raise Refused(f"Image is not the configured cloudflared image {policy.image}")
    labels = fields.get("labels", ("Labels", None))[1]
    owner_key, owner_value = policy.owner_label
    if not isinstance(labels, dict) or labels.get(owner_key) != owner_value:
        raise Refused(f"Labels lack the ownership label {owner_key}={owner_value}")

    def env(value: Any) -> bool:
        return value is None or (
            isinstance(value, list)
            and all(isinstance(item, str) and item.partition("=")[0] in policy.env_names for item in value)
        )

    def labels_ok(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())

    def falsy(value: Any) -> bool:
        return value is None or value is False

    _only(
        config,
        "",
        {
            "Image": lambda _: True,
            "Labels": labels_ok,
            "Env": env,
            "Cmd": lambda value: value is None or value == list(policy.command),
            "HostConfig": lambda value: value is None or isinstance(value, dict),
            "NetworkingConfig": lambda value: value is None or isinstance(value, dict),
            **dict.fromkeys(
                ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr", "NetworkDisabled"),
                falsy,
            ),
        },
    )
    host_config = fields.get("hostconfig", ("HostConfig", None))[1]
    if isinstance(host_config, dict):
        _check_host_config(policy, host_config)
    networking = fields.get("networkingconfig", ("NetworkingConfig", None))[1]
    if isinstance(networking, dict):
        _check_networking(policy, networking)
    return json.dumps(config).encode()


def _check_host_config(policy: Policy, host_config: Mapping[str, Any]) -> None:
    def network_mode(value: Any) -> bool:
        return value in (None, "", "default", policy.network)

    def restart_policy(value: Any) -> bool:
        if value is None:
            return True
        if not isinstance(value, dict):
            return False
        try:
            _only(
                value,
                "",
                {
                    "Name": lambda name: name in RESTART_POLICIES,
                    "MaximumRetryCount": lambda count: count is None or (type(count) is int and 0 <= count <= 100),
                },
            )
        except Refused:
            return False
        return True

    _only(host_config, "HostConfig.", {"NetworkMode": network_mode, "RestartPolicy": restart_policy})


def _check_networking(policy: Policy, networking: Mapping[str, Any]) -> None:
    """The SDK sends ``{"<network>": null}`` (a quirk the engine ignores); the CLI ``{"EndpointsConfig":
    {"<network>": {}}}``. Endpoint settings (addresses, aliases, links, driver options) are refused."""
    for key, value in networking.items():
        if key.lower() == "endpointsconfig":
            if value is None:
                continue
            if not isinstance(value, dict):
                raise Refused("NetworkingConfig.EndpointsConfig has a value the agent never sends")
            for name, endpoint in value.items():
                if name != policy.network:
                    raise Refused(f"NetworkingConfig.EndpointsConfig names a network other than {policy.network}")
                if endpoint not in (None, {}):
                    raise Refused("NetworkingConfig.EndpointsConfig has endpoint settings the agent never sends")
        elif key != policy.network or value is not None:
            raise Refused(f"NetworkingConfig.{key} is not allowed (the agent never sets it)")


def check_network_create(policy: Policy, body: bytes) -> bytes:
    """The body to forward for ``POST /networks/create``: the configured name, the bridge driver, nothing else."""
    config = parse_body(body, "POST /networks/create")
    fields = _folded(config)
    if fields.get("name", ("Name", None))[1] != policy.network:
        raise Refused(f"Name is not the cloudflared network {policy.network}")
    _only(
        config,
        "",
        {
            "Name": lambda _: True,
            "Driver": lambda value: value in (None, "", "bridge"),
            "CheckDuplicate": lambda value: value is None or isinstance(value, bool),
        },
    )
    return json.dumps(config).encode()


# --- answers --------------------------------------------------------------------------------------------------


def owned(policy: Policy, inspect: Any) -> bool:
    """Whether an inspect answer is of a container carrying the ownership label (exact key and value)."""
    if not isinstance(inspect, dict):
        return False
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    key, value = policy.owner_label
    return isinstance(labels, dict) and labels.get(key) == value


def redact_inspect(policy: Policy, inspect: Any) -> Any:
    """An inspect answer without environment (any container's secrets, cloudflared's token), and without the
    command line of containers the agent does not own."""
    if not isinstance(inspect, dict):
        return inspect
    mine = owned(policy, inspect)
    config = inspect.get("Config")
    if isinstance(config, dict):
        config = dict(config)
        if "Env" in config:
            config["Env"] = []
        if not mine:
            for key in ("Cmd", "Entrypoint"):
                if config.get(key) is not None:
                    config[key] = []
        inspect = {**inspect, "Config": config}
    if not mine:
        inspect = {**inspect, **{key: [] for key in ("Args",) if key in inspect}}
        if "Path" in inspect:
            inspect["Path"] = ""
    return inspect
