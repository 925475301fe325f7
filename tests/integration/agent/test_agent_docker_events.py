"""The agent against a real engine: container lifecycle events reach the master in order, with parsed rules."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from flareport_common.messages.events import ContainerDie, ContainerStart, ContainerStop, Inventory
from flareport_common.messages.rules import AccessSpec, ContainerInfo, Rule
from fptest.agent_harness import Containers, RunningAgent, both_engines, latest_info
from fptest.agent_master_double import MasterDouble
from fptest.waiting import wait_for

APP_LABELS = {
    "flareport.enable": "true",
    "flareport.hostname": "App.Example.com",
    "flareport.service": "http://web:8080",
    "flareport.path": "/api",
    "dockflare.access.policy": "bypass",
    "dockflare.0.hostname": "docs.example.com",
    "dockflare.0.service": "https://docs:8443",
    "dockflare.0.no_tls_verify": "yes",
    "flareport.grace_period": "30",
}


def events_for(master: MasterDouble, container_id: str) -> list[str]:
    out: list[str] = []
    for event in master.container_events():
        if isinstance(event, ContainerStart) and event.container.container_id == container_id:
            out.append(f"start:{event.container.name}")
        elif isinstance(event, ContainerStop) and event.container_id == container_id:
            out.append(f"stop:{event.action}")
        elif isinstance(event, ContainerDie) and event.container_id == container_id:
            out.append("die")
    return out


@both_engines
async def test_lifecycle_is_reported_in_order_with_parsed_rules(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    running = start_agent()

    await wait_for(master.inventory_seen, what="the first inventory snapshot")
    app = containers.run(APP_LABELS)
    plain = containers.run({"com.example.other": "x"})

    async def seen(expected: list[str]) -> bool:
        return events_for(master, app.id) == expected

    name = app.name
    await wait_for(lambda: seen([f"start:{name}"]), what="container_start of the labelled container")
    app.rename(name + "-renamed")
    await wait_for(lambda: seen([f"start:{name}", f"start:{name}-renamed"]), what="the rename reported")
    app.kill()
    await wait_for(
        lambda: seen([f"start:{name}", f"start:{name}-renamed", "stop:kill"]), what="the kill reported as a stop"
    )
    app.start()
    app.stop(timeout=5)
    expected = [f"start:{name}", f"start:{name}-renamed", "stop:kill", f"start:{name}-renamed"]

    async def stopped_after_restart() -> bool:
        # Podman sometimes emits ``stop`` before ``die`` for a plain stop, sometimes only ``die``, and the agent reports
        # each: one or both of them, and nothing else, after the restart.
        reported = events_for(master, app.id)
        rest = reported[len(expected) :]
        return reported[: len(expected)] == expected and bool(rest) and all(r in ("die", "stop:stop") for r in rest)

    await wait_for(stopped_after_restart, timeout=30, what="the restart and the stop reported after the kill")

    first = next(e for e in master.container_events() if isinstance(e, ContainerStart))
    assert first.container.rules == (
        Rule(hostname="app.example.com", service="http://web:8080", path="/api", access=AccessSpec(policy="bypass")),
        Rule(
            hostname="docs.example.com",
            service="https://docs:8443",
            path="/api",
            access=AccessSpec(policy="bypass"),
            origin=first.container.rules[1].origin,
        ),
    ), "base labels and indexed labels (falling back to the base path/access) should both become rules"
    assert first.container.rules[1].origin.no_tls_verify is True
    assert first.container.grace_period_seconds == 30
    assert first.container.errors == ()
    assert plain.id not in {getattr(e, "container_id", None) for e in master.events}, "unlabelled containers stay out"
    seqs = [e.seq for e in master.container_events()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "sequence numbers must strictly increase"

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{running.agent.health_port}/healthz") as response:
            assert response.status == 200
        async with http.get(f"http://127.0.0.1:{running.agent.health_port}/metrics") as response:
            assert "flareport_agent_events_sent_total" in await response.text()
    assert await running.stop() == 0


@both_engines
async def test_invalid_labels_are_reported_with_the_label_and_reason(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent()
    bad = containers.run(
        {
            "dockflare.enable": "true",
            "dockflare.hostname": "good.example.com",
            "dockflare.service": "http://good:80",
            "dockflare.0.hostname": "app.example.com/admin",
            "dockflare.1.hostname": "svc.example.com",
            "dockflare.1.service": "http://svc:80/base",
            "dockflare.2.hostname": "tcp.example.com",
            "dockflare.2.service": "tcp://db",
        }
    )

    async def reported() -> ContainerInfo | None:
        return latest_info(master.events, bad.id)

    info = await wait_for(reported, what="the container with bad labels reported")
    assert info is not None
    assert [r.hostname for r in info.rules] == ["good.example.com"], "the valid rule must survive"
    errors = {e.label: e.reason for e in info.errors}
    assert set(errors) == {"dockflare.0.hostname", "dockflare.1.service", "dockflare.2.service"}
    assert "contains a path" in errors["dockflare.0.hostname"]
    assert "must not contain a path" in errors["dockflare.1.service"]
    assert "needs a port" in errors["dockflare.2.service"]


async def test_events_wait_out_a_throttling_master_and_arrive_in_order(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    start_agent()

    await wait_for(master.inventory_seen, what="the first inventory snapshot")
    master.mode = "throttle"  # every call gets 429 with Retry-After
    made = [containers.run({**APP_LABELS, "flareport.hostname": f"t{i}.example.com"}) for i in range(3)]

    async def throttled() -> bool:
        return master.refused >= 3

    await wait_for(throttled, what="the agent's calls to be throttled")
    assert not any(latest_info(master.events, c.id) for c in made), "nothing gets through while throttled"
    master.mode = "ok"

    async def delivered() -> bool:
        return all(latest_info(master.events, c.id) for c in made)

    await wait_for(delivered, what="the buffered events delivered once the master accepts them")
    started = [e.container.container_id for e in master.container_events() if isinstance(e, ContainerStart)]
    assert started == [c.id for c in made], "buffered events keep Docker's order"


@both_engines
async def test_the_first_inventory_lists_what_runs_and_a_forced_removal_is_reported(
    master: MasterDouble, containers: Containers, start_agent: Callable[..., RunningAgent]
) -> None:
    before = containers.run(APP_LABELS)
    stopped = containers.run({**APP_LABELS, "flareport.hostname": "stopped.example.com"})
    stopped.stop(timeout=5)
    start_agent()

    async def first_inventory() -> Inventory | None:
        return next((e for e in master.events if isinstance(e, Inventory)), None)

    inventory = await wait_for(first_inventory, what="the first inventory snapshot")
    assert inventory is not None
    (info,) = inventory.containers
    assert (info.container_id, info.name) == (before.id, before.name), "only the running labelled container"
    assert [r.hostname for r in info.rules] == ["app.example.com", "docs.example.com"]
    before.remove(force=True)

    async def gone() -> list[str]:
        # Podman's events for a forced removal vary from run to run: usually ``died`` then ``remove``, once in CI
        # ``stop`` before ``died`` (then reported as a stop). Whichever comes first is the one report of the end.
        return [r for r in events_for(master, before.id) if r == "die" or r.startswith("stop:")]

    await wait_for(gone, what="the forced removal of a running container reported")
    # Events arrive in order: once a later container is reported, every event of the removal has been handled.
    after = containers.run({**APP_LABELS, "flareport.hostname": "after.example.com"})
    await wait_for(lambda: _reported(master, after.id), what="a later container reported")
    reported = await gone()
    assert len(reported) == 1, f"one report of its end, whatever events the engine sends: {reported}"


async def _reported(master: MasterDouble, container_id: str) -> bool:
    return bool(events_for(master, container_id))
