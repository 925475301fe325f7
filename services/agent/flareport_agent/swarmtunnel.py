"""cloudflared as a Swarm service on a manager: the token in a Swarm secret, the service pinned to the agent's node.

On a Swarm manager a plain container is outside the orchestrator (nothing reschedules it, and it cannot join the
overlay networks the services are on unless those are attachable), so the agent runs cloudflared the Swarm way:

- the service ``flareport-cloudflared`` (one replica, restart on any exit, constraint ``node.id==<this node>``:
  the tunnel runs where its agent runs), command ``tunnel --no-autoupdate run``, on the overlay network
  ``cloudflare-net`` (created attachable when missing; a local network of that name is refused with what to do),
  with the ownership labels of the container form, which replaces a cloudflared container the agent ran before
  the engine joined a Swarm;
- the tunnel token in a Swarm secret ``flareport-tunnel-token-<hash>`` mounted at
  ``/run/secrets/flareport-tunnel-token`` and named by ``TUNNEL_TOKEN_FILE``, which cloudflared reads: the token
  is never on a command line, in an environment variable or in the service spec. Secrets cannot change, so a new
  token is a new secret (named by the same config hash as the labels), and the old one is removed after the
  service that used it.

The same interface as the container form (``TunnelManager``): ``ensure`` keeps an identical service, replaces any
other; ``stop`` removes the service and its secrets; ``state`` reports its tasks. ``tunnel_manager`` picks the form
by asking the engine whether it is a Swarm manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import docker.types

from flareport_agent.cloudflared import CONFIG_LABEL, MANAGED_LABEL, MANAGED_VALUE, NETWORK, TUNNEL_ID_LABEL
from flareport_agent.images import check_image
from flareport_agent.swarm import SWARM_SERVICE_LABEL
from flareport_agent.swarmwatch import is_manager
from flareport_agent.tunnel import EngineRefused, TunnelManager, TunnelResult
from flareport_common.messages.events import TunnelState

SECRET_NAME_PREFIX = "flareport-tunnel-token-"  # noqa: S105 - a name, not a secret
SECRET_FILE = "flareport-tunnel-token"  # noqa: S105 - the file name under /run/secrets/ in the task
TOKEN_FILE_ENV = f"TUNNEL_TOKEN_FILE=/run/secrets/{SECRET_FILE}"


def tunnel_manager(
    factory: Callable[[], docker.DockerClient],
    *,
    allowed_image: str | None,
    network: str = NETWORK,
    metrics_port: int | None = None,
) -> TunnelManager:
    """The Swarm form on a Swarm manager, else the container form. An engine (or socket proxy) that refuses
    ``/info`` gets the container form: that is all a plain engine needs."""
    manager = TunnelManager(factory, allowed_image=allowed_image, network=network, metrics_port=metrics_port)
    try:
        swarm_mode = is_manager(manager.client)
    except docker.errors.APIError:
        swarm_mode = False
    if not swarm_mode:
        return manager
    client = manager.client
    return SwarmTunnel(lambda: client, allowed_image=allowed_image, network=network, metrics_port=metrics_port)


class SwarmTunnel(TunnelManager):
    def _owned(self, items: list[Any]) -> list[Any]:
        return [i for i in items if (i.attrs.get("Spec") or {}).get("Labels", {}).get(MANAGED_LABEL) == MANAGED_VALUE]

    def find(self) -> Any | None:
        found = self._owned(self.client.services.list(filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"}))
        return found[0] if found else None

    def _labels(self, service: Any) -> dict[str, str]:
        labels: dict[str, str] = (service.attrs.get("Spec") or {}).get("Labels") or {}
        return labels

    def ensure(self, tunnel_id: str, token: str, image: str, *, force: bool = False) -> TunnelResult:
        if self.allowed_image is not None:
            image = check_image(image, self.allowed_image)
        wanted = self.config_hash(tunnel_id, token, image)
        current = self.find()
        if current is not None and not force and self._labels(current).get(CONFIG_LABEL) == wanted:
            return TunnelResult("unchanged", current.id, image)  # the orchestrator keeps its task running
        if current is not None:
            current.remove()
        self._ensure_image(image)  # pinned to this node: the image must be here
        self._ensure_network()
        secret = self._secret(wanted, token)
        labels = {MANAGED_LABEL: MANAGED_VALUE, TUNNEL_ID_LABEL: tunnel_id, CONFIG_LABEL: wanted}
        node_id = str((self.client.info().get("Swarm") or {}).get("NodeID") or "")
        service = self.client.services.create(
            image,
            args=list(self.command),
            name=self.container_name,
            env=[TOKEN_FILE_ENV],
            labels=labels,
            container_labels=labels,
            secrets=[docker.types.SecretReference(secret.id, secret.name, filename=SECRET_FILE, mode=0o400)],
            networks=[self.network],
            constraints=[f"node.id=={node_id}"] if node_id else [],
            restart_policy=docker.types.RestartPolicy(condition="any", delay=1_000_000_000),
            mode=docker.types.ServiceMode("replicated", replicas=1),
        )
        self._remove_secrets(keep=secret.name)
        replaced = self._remove_container_form()
        return TunnelResult("replaced" if current is not None or replaced else "created", service.id, image)

    def _remove_container_form(self) -> bool:
        """Remove a cloudflared container the agent ran before this engine became a Swarm manager: two connectors
        of one tunnel on one node would only split its traffic. Task containers of the service are left alone."""
        found = self.client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"})
        legacy = [
            c for c in found if c.labels.get(MANAGED_LABEL) == MANAGED_VALUE and SWARM_SERVICE_LABEL not in c.labels
        ]
        for container in legacy:
            self._remove(container)
        return bool(legacy)

    def stop(self) -> TunnelResult:
        current = self.find()
        if current is None:
            self._remove_secrets(keep=None)
            return TunnelResult("absent")
        current.remove()
        self._remove_secrets(keep=None)
        self._remove_container_form()
        return TunnelResult("stopped", current.id)

    def state(self, tunnel_id: str | None = None) -> TunnelState:
        current = self.find()
        if current is None:
            return TunnelState(container_state="absent", tunnel_id=tunnel_id)
        tasks = current.tasks()
        states = [str((t.get("Status") or {}).get("State") or "") for t in tasks]
        spec = current.attrs.get("Spec") or {}
        container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        return TunnelState(
            # "running" while a task runs; else the newest task's state ("starting", "failed", ...).
            container_state="running" if "running" in states else (states[0] if states else "pending"),
            image=str(container.get("Image") or "").split("@", 1)[0],
            restarts=max(len(tasks) - 1, 0),  # each restart of the service is a new task
            tunnel_id=self._labels(current).get(TUNNEL_ID_LABEL) or tunnel_id,
        )

    def _secret(self, config: str, token: str) -> Any:
        name = f"{SECRET_NAME_PREFIX}{config[:16]}"
        for secret in self.client.secrets.list(filters={"name": name}):
            if secret.name == name:
                return secret
        return self.client.secrets.create(name=name, data=token.encode(), labels={MANAGED_LABEL: MANAGED_VALUE})

    def _remove_secrets(self, *, keep: str | None) -> None:
        for secret in self._owned(self.client.secrets.list(filters={"label": f"{MANAGED_LABEL}={MANAGED_VALUE}"})):
            if secret.name != keep:
                # Still referenced by a service on its way out: removed with the next ensure or stop instead.
                with contextlib.suppress(docker.errors.APIError):
                    secret.remove()

    def _network_exists(self) -> bool:
        found = [n for n in self.client.networks.list(names=[self.network]) if n.name == self.network]
        if found and found[0].attrs.get("Scope") != "swarm":
            # Left by the container form (before this engine joined a Swarm): a service cannot join a local network.
            raise EngineRefused(
                f"the network {self.network} on this node is a local {found[0].attrs.get('Driver')} network, and a "
                f"Swarm service can only join an overlay network: remove it (docker network rm {self.network}) or "
                "recreate it with --driver overlay --attachable"
            )
        return bool(found)

    def _ensure_network(self) -> None:
        if not self._network_exists():
            try:
                self.client.networks.create(self.network, driver="overlay", attachable=True)
            except docker.errors.APIError as exc:
                if not self._network_exists():
                    raise RuntimeError(f"cannot create network {self.network}: {exc}") from exc
