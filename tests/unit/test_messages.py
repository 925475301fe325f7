"""Message schemas: every tag decodes to its type, unknown input is refused, schemas evolve by adding fields."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

from flareport_common import messages as m
from flareport_common.messages import cfjobs, intents
from flareport_common.messages.base import Message
from flareport_common.messages.rules import AccessSpec, RuleOverride

STREAM_UNIONS: dict[str, Any] = {
    "events": m.EventMessage,
    "intents": m.IntentMessage,
    "cf jobs": m.CfJobMessage,
    "cf results": m.CfResultMessage,
    "agent commands": m.CommandMessage,
}

RULE = m.Rule(
    hostname="app.example.com", service="http://web:8080", path="/api", origin=m.OriginOptions(no_tls_verify=True)
)
SAMPLES: list[Message] = [
    m.AgentRegistered(agent_id="a1", display_name="host-1"),
    m.ContainerStart(agent_id="a1", seq=3, container=m.ContainerInfo(container_id="c1", name="web", rules=(RULE,))),
    m.ContainerStop(agent_id="a1", seq=4, container_id="c1", action="kill"),
    m.ContainerDie(agent_id="a1", seq=5, container_id="c1", exit_code=137),
    m.Inventory(agent_id="a1", seq=6, containers=()),
    m.Heartbeat(agent_id="a1", tunnel=m.TunnelState(container_state="running")),
    m.TunnelStatus(agent_id="a1", tunnel=m.TunnelState()),
    m.CommandAck(agent_id="a1", command_id="x", ok=False, error="image missing"),
    m.AgentEnrolled(agent_id="a1", tunnel_name="host-1"),
    m.AgentPolicyChanged(agent_id="a1", allowed_zones=("example.com",), allow_apex=True, origin_allow=("unix",)),
    intents.AgentKeysRevoked(agent_id="a1"),
    intents.HostnameAssigned(hostname="app.example.com", owner="agent:a1"),
    intents.HostnameAssigned(hostname="app.example.com"),
    m.AgentRenamed(agent_id="a1", display_name="n"),
    m.AgentDecommissioned(agent_id="a1"),
    m.AgentRemoved(agent_id="a1"),
    m.KeyRolled(agent_id="a1", key_id="k", new_key="secret"),
    m.ManualRuleUpserted(rule_id="r1", rule=RULE, tunnel_id="t"),
    m.ManualRuleDeleted(rule_id="r1"),
    intents.RuleForceDeleted(hostname="app.example.com", path="/api", requested_by="ui:admin"),
    intents.RuleOverrideSet(
        hostname="app.example.com", path="/api", override=RuleOverride(service="http://b:80", access=AccessSpec())
    ),
    intents.RuleOverrideCleared(hostname="app.example.com"),
    m.AccessGroupUpserted(group_id="g", name="staff", include=({"email_domain": {"domain": "example.com"}},)),
    m.AccessGroupDeleted(group_id="g"),
    m.ReconcileRequested(scope="zone:example.com"),
    intents.TunnelRestartRequested(agent_id="a1", tunnel_id="t1", image="cloudflare/cloudflared:2025.9.0"),
    intents.TunnelsRefreshRequested(),
    m.EnsureTunnel(agent_id="a1", tunnel_name="host-1"),
    m.SyncTunnelIngress(
        tunnel_id="t", version="v1", rules=(m.IngressEntry(hostname="a.example.com", service="http://a"),)
    ),
    m.SyncDnsZone(
        zone_name="example.com", version="v1", records=(m.DesiredRecord(name="a.example.com", tunnel_id="t"),)
    ),
    m.SyncAccessApp(hostname="a.example.com", version="v1", app=None),
    m.DeleteTunnel(tunnel_id="t"),
    m.VerifyTarget(target="zone:example.com"),
    cfjobs.RefreshTunnels(),
    m.JobResult(job_id="j", job_type="sync_dns_zone", target="zone:example.com", ok=True),
    m.TunnelEnsured(job_id="j", agent_id="a1", ok=True, tunnel_id="t", token="tok"),
    m.StartTunnel(tunnel_id="t", token="tok"),
    m.StopTunnel(),
    m.RestartTunnel(image="cloudflare/cloudflared:2025.9.0"),
    m.ResyncInventory(),
    m.RotateKey(key_id="k", new_key="secret"),
    m.Decommission(),
]


def union_members(union: Any) -> set[type]:
    return set(typing.get_args(union))


def test_every_stream_message_type_has_a_sample() -> None:
    covered = {type(sample) for sample in SAMPLES}
    for stream, union in STREAM_UNIONS.items():
        missing = union_members(union) - covered
        assert not missing, f"{stream} types without a round-trip sample: {missing}"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip_through_its_stream_union(sample: Message) -> None:
    union = next(u for u in STREAM_UNIONS.values() if type(sample) in union_members(u))
    decoded = msgspec.json.decode(msgspec.json.encode(sample), type=union)
    assert decoded == sample
    assert decoded.id and decoded.schema_version == 1 and decoded.occurred_at.tzinfo is not None


def test_tags_are_unique_across_all_streams() -> None:
    tags = [msgspec.inspect.type_info(t).tag for u in STREAM_UNIONS.values() for t in union_members(u)]  # type: ignore[attr-defined]
    assert len(tags) == len(set(tags))


def test_unknown_type_and_wrong_field_types_are_refused_with_the_field_named() -> None:
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'container_explode'"):
        msgspec.json.decode(b'{"type":"container_explode","agent_id":"a"}', type=m.EventMessage)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.seq"):
        msgspec.json.decode(
            b'{"type":"container_stop","agent_id":"a","seq":"x","container_id":"c"}', type=m.EventMessage
        )


def test_old_and_new_writers_are_both_readable() -> None:
    # A message from a newer writer with an extra field, and one from an older writer without optional fields.
    newer = b'{"type":"container_stop","agent_id":"a","seq":1,"container_id":"c","future_field":[1,2]}'
    older = b'{"type":"heartbeat","agent_id":"a"}'
    stop = msgspec.json.decode(newer, type=m.EventMessage)
    beat = msgspec.json.decode(older, type=m.EventMessage)
    assert isinstance(stop, m.ContainerStop) and stop.action == "stop"
    assert isinstance(beat, m.Heartbeat) and beat.tunnel.container_state == "absent" and beat.correlation_id == ""


def test_rule_identity_is_hostname_plus_path() -> None:
    assert RULE.key == "app.example.com/api"
    assert m.Rule(hostname="a.example.com", service="http://a").key == "a.example.com"


def test_job_targets_name_the_cloudflare_object() -> None:
    assert m.SyncDnsZone(zone_name="example.com", version="v").target == "zone:example.com"
    assert m.SyncTunnelIngress(tunnel_id="t1", version="v").target == "tunnel:t1"
    assert m.SyncAccessApp(hostname="a.example.com", path="/x", version="v").target == "access:a.example.com/x"
