"""Docker Swarm services as the agent reports them: pure decisions over what ``GET /services`` and ``GET /tasks`` list.

On a Swarm manager the unit a user labels is the *service*, not a container: its tasks are scheduled on any node
(workers run no agent), replaced on every update and come and go with scaling. So the manager's agent reports each
labelled service as one entry of its inventory, under the service's ID, with the service's name and image:

- **Labels** are those of the service (``deploy.labels`` in a stack file, ``docker service create --label``) over
  those of its container spec (``labels`` in a stack file, ``--container-label``): the same names as on a container
  (``flareport.``, ``dockflare.``, ``cloudflare.tunnel.``, ``LABEL_PREFIX``), parsed by ``labels.py``. A service
  label wins over a container label of the same name, as the service is what an operator of a stack edits.
- **Published while it has a running task** (any node), or, once published, a task coming up to replace one (a
  rolling update): a service scaled to zero, or whose tasks all failed, is reported stopped, and the control
  plane removes its hostnames after the grace period, as for a container. A removed service is reported
  destroyed. A service update that changes its labels, name or image is reported as a new ``container_start``
  (reports are level-based: the newest wins).
- **Task containers are not containers of their own**: the tracker ignores every container carrying
  ``com.docker.swarm.service.id`` (``SWARM_SERVICE_LABEL``), so a service's hostname is claimed once, by its
  service, and never by the task container a node happens to run.

Nothing here does I/O: ``swarmwatch.py`` lists services and tasks and applies ``changes``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from flareport_agent.labels import parse_container
from flareport_common.messages.events import ContainerStart, ContainerStop, StopAction
from flareport_common.messages.rules import ContainerInfo
from flareport_common.protocol import AgentEvent

SWARM_SERVICE_LABEL = "com.docker.swarm.service.id"


def _labels(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _mapping(raw: Any) -> Mapping[str, Any]:
    """``raw`` if it is a JSON object, else an empty one: an engine's answer of another shape publishes nothing."""
    return raw if isinstance(raw, Mapping) else {}


def service_labels(service: Mapping[str, Any]) -> dict[str, str]:
    """The container spec's labels, overridden by the service's own."""
    spec = _mapping(service.get("Spec"))
    container = _mapping(_mapping(spec.get("TaskTemplate")).get("ContainerSpec"))
    return {**_labels(container.get("Labels")), **_labels(spec.get("Labels"))}


# A task the orchestrator is bringing up: it is not running yet, but it replaces one that was (a rolling update
# with stop-first; a task rescheduled after its node failed). A service already published stays published while
# it has one, so an update does not flap its hostnames; a new service waits for a running task.
_COMING_UP = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}


def coming_up(tasks: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The IDs of the tasks the orchestrator wants running that are still coming up: not running yet, nor failed.

    A task's container starts (and the engine says so in its events) a moment before its node reports the task
    "running" to the manager; a listing made in between does not publish a new service yet, and no further event
    follows. ``swarmwatch.py`` lists again soon while this is not empty, rather than at the next round."""
    out: set[str] = set()
    for task in tasks:
        if not isinstance(task, Mapping) or task.get("DesiredState") != "running":
            continue
        state = str(_mapping(task.get("Status")).get("State") or "")
        if state in _COMING_UP and state != "running":
            out.add(str(task.get("ID") or ""))
    return frozenset(out)


def task_counts(tasks: Iterable[Mapping[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Per service ID: running tasks, and tasks that are running or coming up (see ``_COMING_UP``)."""
    running: dict[str, int] = {}
    live: dict[str, int] = {}
    for task in tasks:
        if not isinstance(task, Mapping):
            continue
        service_id = str(task.get("ServiceID") or "")
        state = str(_mapping(task.get("Status")).get("State") or "")
        desired = str(task.get("DesiredState") or "")
        if not service_id or desired not in ("running", "ready"):
            continue  # being shut down, or history
        if state in _COMING_UP:
            live[service_id] = live.get(service_id, 0) + 1
        if state == "running" and desired == "running":
            running[service_id] = running.get(service_id, 0) + 1
    return running, live


def published(
    services: Iterable[Mapping[str, Any]],
    tasks: Iterable[Mapping[str, Any]],
    *,
    label_prefix: str | None = None,
    ignore_label: tuple[str, str] | None = None,
    already: Collection[str] = (),
) -> dict[str, ContainerInfo]:
    """The services to publish now, by service ID: enabled by their labels and with at least one running task, or,
    for those ``already`` published, one coming up."""
    running, live = task_counts(tasks)
    out: dict[str, ContainerInfo] = {}
    for service in services:
        if not isinstance(service, Mapping):
            continue
        service_id = str(service.get("ID") or "")
        counts = live if service_id in already else running
        if not service_id or counts.get(service_id, 0) == 0:
            continue
        labels = service_labels(service)
        if ignore_label is not None and labels.get(ignore_label[0]) == ignore_label[1]:
            continue  # the agent's own cloudflared service
        spec = _mapping(service.get("Spec"))
        container = _mapping(_mapping(spec.get("TaskTemplate")).get("ContainerSpec"))
        info = parse_container(
            labels,
            container_id=service_id,
            name=str(spec.get("Name") or service_id[:12]),
            image=str(container.get("Image") or "").split("@", 1)[0],
            state="running",
            label_prefix=label_prefix,
        )
        if info is not None:
            out[service_id] = info
    return out


def changes(
    before: Mapping[str, ContainerInfo], after: Mapping[str, ContainerInfo], present: Iterable[str]
) -> list[AgentEvent]:
    """The events that take the master from ``before`` to ``after``: a start for each new or changed service, a stop
    for each one no longer published (``destroy`` when the service is gone, ``stop`` when it only has no running
    task or no longer enables publishing). ``present``: the IDs of every service that exists."""
    exists = set(present)
    events: list[AgentEvent] = []
    for service_id, info in after.items():
        if before.get(service_id) != info:
            events.append(ContainerStart(agent_id="", seq=0, container=info))
    for service_id, info in before.items():
        if service_id not in after:
            action: StopAction = "stop" if service_id in exists else "destroy"
            events.append(ContainerStop(agent_id="", seq=0, container_id=service_id, name=info.name, action=action))
    return events
