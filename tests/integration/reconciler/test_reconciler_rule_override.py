"""An admin's override of a container rule: it wins over the labels (also after the container is recreated with
other labels) for that hostname + path only, and "revert to labels" brings the labels back — with 3 replicas."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import ContainerInfo, ContainerStart, Rule, SyncTunnelIngress
from flareport_common.messages.intents import RuleOverrideCleared, RuleOverrideSet
from flareport_common.messages.rules import AccessSpec, OriginOptions, RuleOverride
from flareport_common.streams import Producer
from fptest.reconciler_harness import FakeDnsWorker, Replicas, rule_records, settle

from .test_reconciler_lifecycle import enrol


def app(cid: str, service: str) -> ContainerInfo:
    rules = (
        Rule(hostname="app.example.com", service=service, access=AccessSpec(policy="bypass")),
        Rule(hostname="app.example.com", service=service, path="/api"),
    )
    return ContainerInfo(container_id=cid, name=f"c-{cid}", rules=rules)


def ingress(worker: FakeDnsWorker) -> list[tuple[str | None, str, OriginOptions]]:
    tunnel = worker.latest("tunnel:tun-a1")
    assert isinstance(tunnel, SyncTunnelIngress)
    return [(r.path, r.service, r.origin) for r in tunnel.rules]


async def test_an_override_wins_over_labels_until_reverted(
    redis: aioredis.Redis, keys: Keys, replicas: Replicas, worker: FakeDnsWorker
) -> None:
    await enrol(redis, keys, worker, "a1")
    producer = Producer(redis)
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=1, container=app("c1", "http://web:80")))
    await settle(redis, keys, worker)

    tls = OriginOptions(no_tls_verify=True)
    override = RuleOverride(service="https://web:8443", origin=tls, access=AccessSpec())
    await producer.send(keys.intents, RuleOverrideSet(hostname="app.example.com", override=override))
    await settle(redis, keys, worker)
    docs = await rule_records(redis, keys)
    assert (docs["app.example.com"].service, docs["app.example.com"].overridden) == (
        "https://web:8443",
        ("service", "origin", "access"),
    )
    assert docs["app.example.com"].access is None, "an empty Access override removes the labels' Access app"
    assert (docs["app.example.com/api"].service, docs["app.example.com/api"].overridden) == ("http://web:80", ())
    assert sorted(ingress(worker), key=str) == sorted(
        [(None, "https://web:8443", tls), ("/api", "http://web:80", OriginOptions())], key=str
    )

    # The container starts again with other labels: the override still wins for its path, the labels for the other.
    await producer.send(keys.events, ContainerStart(agent_id="a1", seq=2, container=app("c1", "http://web2:80")))
    await settle(redis, keys, worker)
    docs = await rule_records(redis, keys)
    assert docs["app.example.com"].service == "https://web:8443"
    assert docs["app.example.com/api"].service == "http://web2:80"

    await producer.send(keys.intents, RuleOverrideCleared(hostname="app.example.com"))
    await settle(redis, keys, worker)
    docs = await rule_records(redis, keys)
    assert (docs["app.example.com"].service, docs["app.example.com"].overridden) == ("http://web2:80", ())
    assert docs["app.example.com"].access == AccessSpec(policy="bypass"), "the labels' Access is back"
    assert (None, "http://web2:80", OriginOptions()) in ingress(worker)
