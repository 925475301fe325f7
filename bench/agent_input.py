"""Cost of the API's agent input checks (``flareport_api.agent_input.checked``), in one process, no I/O.

Prints events checked per second for three kinds of batches: container stops (what ``bench/api_ingest.py``
posts), container starts with two rules each (one with an Access spec and custom rules), and one inventory of
1,000 containers with two rules each. Compare with the ingest rate the API must sustain (>= 5,000 events/s per
process): the checks should cost a small fraction of that. Usage: python bench/agent_input.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from flareport_api.agent_input import checked
from flareport_common.messages.events import ContainerStart, ContainerStop, Inventory
from flareport_common.messages.rules import AccessSpec, ContainerInfo, Rule
from flareport_common.protocol import AgentEvent
from flareport_common.settings import AgentQuotas

ACCESS = AccessSpec(
    policy="custom",
    groups=("admins",),
    custom_rules=(
        {"decision": "allow", "include": [{"email_domain": {"domain": "example.com"}}, {"ip": {"ip": "10.0.0.0/8"}}]},
    ),
)


def container(i: int) -> ContainerInfo:
    rules = (
        Rule(hostname=f"app{i}.example.com", service=f"http://app_{i}:8080", path="/api"),
        Rule(hostname=f"admin{i}.example.com", service="https://10.0.0.5:8443", zone_name="example.com", access=ACCESS),
    )
    return ContainerInfo(container_id=f"{i:064x}", name=f"app_{i}", image="registry.example.com/app:1.2.3", rules=rules)


def rate(batch: tuple[AgentEvent, ...], events: int, seconds: float) -> float:
    quotas = AgentQuotas()
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        checked(batch, quotas)
        done += events
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    stops = tuple(ContainerStop(agent_id="a", seq=i, container_id=f"c{i}") for i in range(50))
    starts = tuple(ContainerStart(agent_id="a", seq=i, container=container(i)) for i in range(50))
    inventory = (Inventory(agent_id="a", seq=1, containers=tuple(container(i) for i in range(1000))),)
    cases: dict[str, Callable[[], float]] = {
        "stops_per_s": lambda: rate(stops, 50, args.seconds),
        "starts_2_rules_per_s": lambda: rate(starts, 50, args.seconds),
        "inventory_containers_per_s": lambda: rate(inventory, 1000, args.seconds),
    }
    print(json.dumps({"phase": "agent_input", **{name: round(run()) for name, run in cases.items()}}))


if __name__ == "__main__":
    main()
