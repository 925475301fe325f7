"""What an agent may put in an event batch: every field checked and bounded, ``adopt`` refused, size quotas
named, over-long label errors cut; pure, so every case is a plain function call."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from flareport_api import agent_input
from flareport_api.errors import ApiError
from flareport_common.messages.events import (
    ContainerDie,
    ContainerStart,
    ContainerStop,
    Inventory,
    TunnelState,
    TunnelStatus,
)
from flareport_common.messages.rules import AccessSpec, ContainerInfo, OriginOptions, Rule, RuleError
from flareport_common.protocol import AgentEvent
from flareport_common.settings import AgentQuotas
from flareport_common.validate import TRUNCATED

QUOTAS = AgentQuotas(containers=3, rules_per_container=2, hostnames=4, label_errors_per_container=2,
                     label_error_bytes=100)  # fmt: skip


def rule(host: str = "app.example.com", **fields: Any) -> Rule:
    return Rule(hostname=host, service=fields.pop("service", "http://web:80"), **fields)


def container(*rules: Rule, cid: str = "c1", **fields: Any) -> ContainerInfo:
    return ContainerInfo(container_id=cid, name=fields.pop("name", "web"), rules=rules, **fields)


def start(info: ContainerInfo) -> ContainerStart:
    return ContainerStart(agent_id="a", seq=1, container=info)


def refused(events: tuple[AgentEvent, ...], quotas: AgentQuotas = QUOTAS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        agent_input.checked(events, quotas)
    assert caught.value.status == 422
    return caught.value


def over(events: tuple[AgentEvent, ...], quotas: AgentQuotas = QUOTAS) -> agent_input.OverQuota:
    with pytest.raises(agent_input.OverQuota) as caught:
        agent_input.checked(events, quotas)
    return caught.value


def test_a_valid_batch_passes_with_names_normalised() -> None:
    events = (
        start(container(rule("App.Example.COM.", zone_name="Example.com", path="/api"))),
        ContainerStop(agent_id="a", seq=2, container_id="c1", name="web"),
        ContainerDie(agent_id="a", seq=3, container_id="c2", exit_code=137),
        TunnelStatus(agent_id="a", tunnel=TunnelState()),
    )
    out = agent_input.checked(events, QUOTAS)
    assert out[0].container.rules[0].hostname == "app.example.com"  # type: ignore[union-attr]
    assert out[0].container.rules[0].zone_name == "example.com"  # type: ignore[union-attr]
    assert out[1:] == events[1:]


def test_adopt_in_an_agent_rule_is_refused_naming_the_field() -> None:
    error = refused((start(container(rule(), rule("b.example.com", adopt=True))),))
    assert error.field == "events[0].container.rules[1].adopt"
    assert "only an admin may adopt" in error.message


def test_adopt_inside_an_inventory_names_the_container() -> None:
    inventory = Inventory(agent_id="a", seq=1, containers=(container(), container(rule(adopt=True), cid="c2")))
    assert (
        refused((TunnelStatus(agent_id="a", tunnel=TunnelState()), inventory)).field
        == "events[1].containers[1].rules[0].adopt"
    )


def allow(*include: dict[str, Any]) -> dict[str, Any]:
    """A custom policy (access.custom_rules holds whole policies, as in DockFlare)."""
    return {"decision": "allow", "include": list(include)}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (rule("localhost"), "hostname"),
        (rule("a_b.example.com"), "hostname"),
        (rule("x" * 300 + ".example.com"), "hostname"),
        (rule(service="ftp://web:21"), "service"),
        (rule(service="http://user:pw@web"), "service"),
        (rule(service="http://web:80/path"), "service"),
        (rule(service="unix:relative.sock"), "service"),
        (rule(service="http://" + "a" * 2000), "service"),
        (rule(path="/a b"), "path"),
        (rule(path="/" + "a" * 2000), "path"),
        (rule("pwn.victim.test", zone_name="example.com"), "zone_name"),
        (rule(origin=OriginOptions(origin_server_name="not a host")), "origin.origin_server_name"),
        (rule(origin=OriginOptions(http_host_header="a\r\nX-Evil: 1")), "origin.http_host_header"),
        (rule(access=AccessSpec(name="x" * 201)), "access.name"),
        (rule(access=AccessSpec(session_duration="forever")), "access.session_duration"),
        (rule(access=AccessSpec(groups=("ok", "no spaces"))), "access.groups[1]"),
        (rule(access=AccessSpec(groups=tuple(f"g{i}" for i in range(51)))), "access.groups"),
        (rule(access=AccessSpec(allowed_idps=("x" * 65,))), "access.allowed_idps[0]"),
        (rule(access=AccessSpec(custom_rules=({"claimed_at": 0},))), "access.custom_rules[0]"),
        (rule(access=AccessSpec(custom_rules=(allow({"email": {}, "ip": {}}),))), "access.custom_rules[0].include[0]"),
        (rule(access=AccessSpec(custom_rules=(allow({"email": "a@b"}),))), "access.custom_rules[0].include[0].email"),
        (
            rule(access=AccessSpec(custom_rules=({"decision": "maybe", "include": []},))),
            "access.custom_rules[0].decision",
        ),
        (
            rule(access=AccessSpec(custom_rules=({"decision": "allow", "include": []},))),
            "access.custom_rules[0].include",
        ),
        (rule(access=AccessSpec(custom_rules=(allow({"email": {"email": "a" * 9000}}),))), "access.custom_rules"),
        (rule(access=AccessSpec(custom_rules=(allow({"saml": {"a": [[[{}]]]}}),))), "access.custom_rules"),
        (
            rule(access=AccessSpec(custom_rules=tuple(allow({"everyone": {}}) for _ in range(51)))),
            "access.custom_rules",
        ),
    ],
)
def test_every_rule_field_is_checked_and_named(bad: Rule, field: str) -> None:
    assert refused((start(container(bad)),)).field == f"events[0].container.rules[0].{field}"


def test_known_access_rule_types_pass() -> None:
    custom: tuple[dict[str, Any], ...] = (
        {"email": {"email": "a@example.com"}},
        {"everyone": {}},
        {"ip": {"ip": "10.0.0.0/8"}},
        {"group": {"id": "g1"}},
        {"service_token": {"token_id": "t"}},
        {"any_valid_service_token": {}},
        {"login_method": {"id": "m"}},
        {"geo": {"country_code": "CH"}},
        {"email_domain": {"domain": "x.com"}},
    )
    access = AccessSpec(policy="custom", allowed_idps=("0b7c-idp",), custom_rules=(allow(*custom),))
    assert agent_input.checked((start(container(rule(access=access))),), QUOTAS)


def test_a_hostile_nesting_is_refused_without_recursing() -> None:
    deep: dict[str, Any] = {}
    for _ in range(100_000):
        deep = {"x": deep}
    bad = rule(access=AccessSpec(custom_rules=(allow({"saml": deep}),)))
    assert refused((start(container(bad)),)).field == "events[0].container.rules[0].access.custom_rules"


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (start(container(cid="c 1")), "events[0].container.container_id"),
        (start(container(cid="c" * 129)), "events[0].container.container_id"),
        (start(container(name="n" * 513)), "events[0].container.name"),
        (start(container(name="web\n[fake log line]")), "events[0].container.name"),
        (start(container(image="i" * 1025)), "events[0].container.image"),
        (start(container(state="")), "events[0].container.state"),
        (start(container(health="h" * 33)), "events[0].container.health"),
        (start(container(grace_period_seconds=-1)), "events[0].container.grace_period_seconds"),
        (ContainerStop(agent_id="a", seq=1, container_id="c1", name="n" * 600), "events[0].name"),
        (ContainerStop(agent_id="a", seq=1, container_id="", name="n"), "events[0].container_id"),
        (ContainerDie(agent_id="a", seq=1, container_id="c1", exit_code=2**40), "events[0].exit_code"),
        (ContainerStop(agent_id="a", seq=1, container_id="c1", id="x" * 65), "events[0].id"),
        (ContainerStop(agent_id="a", seq=1, container_id="c1", correlation_id="a b"), "events[0].correlation_id"),
    ],
)
def test_container_and_envelope_fields_are_bounded(event: AgentEvent, field: str) -> None:
    assert refused((event,)).field == field


def test_tunnel_status_fields_are_bounded() -> None:
    bad = TunnelStatus(agent_id="a", tunnel=TunnelState())
    bad = msgspec.structs.replace(bad, tunnel=msgspec.structs.replace(bad.tunnel, tunnel_id="../../x"))
    assert refused((bad,)).field == "events[0].tunnel.tunnel_id"


def test_duplicate_rules_in_one_container_are_refused() -> None:
    error = refused((start(container(rule("a.example.com"), rule("A.example.com"))),))
    assert error.field == "events[0].container.rules[1].hostname"


@pytest.mark.parametrize(
    ("events", "limit"),
    [
        ((Inventory(agent_id="a", seq=1, containers=tuple(container(cid=f"c{i}") for i in range(4))),), "containers"),
        ((start(container(rule("a.example.com"), rule("b.example.com"), rule("c.example.com"))),),
         "rules_per_container"),
        ((start(container(errors=tuple(RuleError(label=f"l{i}", reason="r") for i in range(3)))),), "label_errors"),
        ((Inventory(agent_id="a", seq=1, containers=tuple(
            container(rule(f"a{i}.example.com"), rule(f"b{i}.example.com"), cid=f"c{i}") for i in range(3))),),
         "hostnames"),
        (tuple(start(container(rule(f"a{i}.example.com"), cid=f"c{i}")) for i in range(5)), "hostnames"),
    ],
)  # fmt: skip
def test_size_quotas_are_named(events: tuple[AgentEvent, ...], limit: str) -> None:
    assert over(events).limit == limit


def test_the_same_hostname_twice_counts_once() -> None:
    events = tuple(start(container(rule("a.example.com"), cid=f"c{i}")) for i in range(5))
    assert len(agent_input.checked(events, QUOTAS)) == 5


def test_an_over_long_label_error_is_cut_with_a_marker_not_refused() -> None:
    long = RuleError(label="flareport.access.custom_rules", reason="is not valid JSON: " + "é" * 500)
    out = agent_input.checked((start(container(errors=(long,))),), QUOTAS)
    error = out[0].container.errors[0]  # type: ignore[union-attr]
    assert error.label == long.label
    assert error.reason.endswith(TRUNCATED) and error.reason.startswith("is not valid JSON: é")
    assert len(error.label.encode()) + len(error.reason.encode()) <= QUOTAS.label_error_bytes
