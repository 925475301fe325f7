"""The host's ``cloudflared`` container: create, replace, stop and inspect it (blocking Docker calls; run in threads).

The container is found by its ownership label ``flareport.managed=cloudflared`` (never by name alone, so a user's
own container called ``cloudflared`` is never touched). It runs ``tunnel --no-autoupdate run`` (with ``--metrics``
for ``CLOUDFLARED_METRICS_PORT``) with the tunnel token only in the ``TUNNEL_TOKEN`` environment variable — never on
the command line, where ``ps`` and ``docker inspect``'s ``Args`` would show it — on the ``CLOUDFLARED_NETWORK_NAME``
network (``cloudflare-net`` by default, created when missing) with restart policy
``unless-stopped``, so the engine brings it back after a reboot even while the agent is down.

``ensure`` is idempotent: a running container with the same image and token (compared through a hash label, the
token itself is not stored in a label) is kept as is; anything else is replaced. It creates a container only from
the image it was given as ``allowed_image`` (the agent's ``CLOUDFLARED_IMAGE``, see ``images.py``): whatever path
asks for another one — a command, the saved state — is refused here as well.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from flareport_agent.cloudflared import (
    CONFIG_LABEL,
    CONTAINER_NAME,
    MANAGED_LABEL,
    MANAGED_VALUE,
    NETWORK,
    TUNNEL_ID_LABEL,
    command,
)
from flareport_agent.images import check_image
from flareport_common.messages.events import TunnelState


class EngineRefused(Exception):
    """The engine refused what the tunnel needs (an image it cannot pull, a name in use...): an operator's matter,
    reported with the command's result and logged in one line, not as a crash."""


@dataclass(frozen=True, slots=True)
class TunnelResult:
    action: str  # "created", "replaced", "unchanged", "started", "stopped", "absent", "external"
    container_id: str | None = None
    image: str | None = None
    detail: str | None = None  # a sentence for the operator, in the command's result

    def as_dict(self) -> dict[str, Any]:
        found = {"action": self.action, "container_id": self.container_id, "image": self.image}
        return found if self.detail is None else {**found, "detail": self.detail}


def config_hash(tunnel_id: str, token: str, image: str, shape: str = "") -> str:
    """What makes a running cloudflared the wanted one. ``shape`` (network and command) is empty for the default
    network and command, so containers made before they were settings keep their hash and are not replaced."""
    extra = f"\0{shape}" if shape else ""
    return hashlib.sha256(f"{tunnel_id}\0{token}\0{image}{extra}".encode()).hexdigest()[:32]


class TunnelManager:
    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient],
        *,
        container_name: str = CONTAINER_NAME,
        network: str = NETWORK,
        allowed_image: str | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self._factory = client_factory
        self.allowed_image = allowed_image
        self._client: docker.DockerClient | None = None
        self.container_name = container_name
        self.network = network
        self.metrics_port = metrics_port
        self.command = command(metrics_port)

    def config_hash(self, tunnel_id: str, token: str, image: str) -> str:
        """The hash label of a cloudflared for this tunnel, token and image with this manager's network and
        command: a change of ``CLOUDFLARED_NETWORK_NAME`` or ``CLOUDFLARED_METRICS_PORT`` replaces it."""
        default = self.network == NETWORK and self.metrics_port is None
        shape = "" if default else f"{self.network}\0{' '.join(self.command)}"
        return config_hash(tunnel_id, token, image, shape)

    @property
    def client(self) -> docker.DockerClient:
        # Created on first use, i.e. in the worker thread: making a client asks the engine for its API version, a
        # blocking call that must never run on the event loop.
        if self._client is None:
            self._client = self._factory()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def find(self) -> Any | None:
        found = self.client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"})
        # Podman's label filter is a substring-safe key=value match, but check again: ownership must be exact.
        owned = [c for c in found if c.labels.get(MANAGED_LABEL) == MANAGED_VALUE]
        return owned[0] if owned else None

    def ensure(self, tunnel_id: str, token: str, image: str, *, force: bool = False) -> TunnelResult:
        if self.allowed_image is not None:
            image = check_image(image, self.allowed_image)
        wanted = self.config_hash(tunnel_id, token, image)
        current = self.find()
        if current is not None and not force and current.labels.get(CONFIG_LABEL) == wanted:
            if current.status == "running":
                return TunnelResult("unchanged", current.id, image)
            current.start()
            return TunnelResult("started", current.id, image)
        replaced = current is not None
        if current is not None:
            self._remove(current)
        self._ensure_image(image)
        self._ensure_network()
        container = self.client.containers.run(
            image,
            list(self.command),
            name=self.container_name,
            detach=True,
            environment={"TUNNEL_TOKEN": token},
            labels={MANAGED_LABEL: MANAGED_VALUE, TUNNEL_ID_LABEL: tunnel_id, CONFIG_LABEL: wanted},
            network=self.network,
            restart_policy={"Name": "unless-stopped"},
        )
        return TunnelResult("replaced" if replaced else "created", container.id, image)

    def stop(self) -> TunnelResult:
        current = self.find()
        if current is None:
            return TunnelResult("absent")
        self._remove(current)
        return TunnelResult("stopped", current.id)

    def state(self, tunnel_id: str | None = None) -> TunnelState:
        current = self.find()
        if current is None:
            return TunnelState(container_state="absent", tunnel_id=tunnel_id)
        attrs = current.attrs
        return TunnelState(
            container_state=str(attrs.get("State", {}).get("Status") or current.status),
            image=str(attrs.get("Config", {}).get("Image") or ""),
            restarts=int(attrs.get("RestartCount") or 0),
            tunnel_id=current.labels.get(TUNNEL_ID_LABEL) or tunnel_id,
        )

    def _remove(self, container: Any) -> None:
        try:
            container.stop(timeout=10)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            pass  # already stopped or stopping: removal below forces it
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            return

    def _ensure_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            repo, tag = _split_image(image)
            try:
                self.client.images.pull(repo, tag=tag)
            except docker.errors.APIError as exc:
                raise EngineRefused(
                    f"the cloudflared image {image} is not on this host and could not be pulled "
                    f"({exc.explanation or exc}); pull it on the host, or set CLOUDFLARED_IMAGE to one that is there"
                ) from exc

    def _network_exists(self) -> bool:
        # The engine's name filter matches substrings ("net" finds "cloudflare-net"): compare exactly.
        return any(n.name == self.network for n in self.client.networks.list(names=[self.network]))

    def _ensure_network(self) -> None:
        if not self._network_exists():
            try:
                self.client.networks.create(self.network, driver="bridge")
            except docker.errors.APIError as exc:
                # Another process may have created it in the meantime; only that conflict is fine.
                if not self._network_exists():
                    raise RuntimeError(f"cannot create network {self.network}: {exc}") from exc


def _split_image(image: str) -> tuple[str, str | None]:
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"
