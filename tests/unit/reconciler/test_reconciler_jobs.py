"""A target's job from its decisions: nothing for a target that never had one, an emptying job for one that had,
the recovery hold's versions, and the rules whose status the result sets."""

from __future__ import annotations

from flareport_common.messages import AccessSpec, Rule, SyncAccessApp, SyncDnsZone, SyncTunnelIngress
from flareport_reconciler.jobs import ABSENT, job_for, pruning
from flareport_reconciler.resolution import AgentView, Claim, Decision, resolve_hostname
from flareport_reconciler.targets import Target

AGENTS = {"a1": AgentView("a1", tunnel_id="t1")}


def decided(hostname: str, path: str | None = None, access: AccessSpec | None = None) -> list[Decision]:
    rule = Rule(hostname=hostname, service="http://web:80", path=path, access=access)
    claim = Claim(source="agent:a1/c1", rule=rule, claimed_at=1.0, agent_id="a1", container_id="c1")
    return resolve_hostname([claim], AGENTS)


def test_a_target_with_nothing_desired_sends_a_job_only_if_it_had_one() -> None:
    for target in (Target.zone("example.com"), Target.tunnel("t1"), Target.access("app.example.com")):
        assert job_for(target, [], last_version=None, prune=True).job is None, f"{target}: never had a job"
        emptying = job_for(target, [], last_version="v1", prune=True).job
        assert emptying is not None, f"{target}: what its last job made must be removed"
    app = job_for(Target.access("app.example.com"), [], last_version="v1", prune=True)
    assert isinstance(app.job, SyncAccessApp) and app.job.app is None and app.version == ABSENT


def test_a_zone_and_a_tunnel_carry_their_winners_and_name_them_as_members() -> None:
    decisions = decided("app.example.com") + decided("api.example.com", "/v1")
    zone = job_for(Target.zone("example.com"), decisions, last_version=None, prune=True)
    assert isinstance(zone.job, SyncDnsZone) and [r.name for r in zone.job.records] == [
        "api.example.com",
        "app.example.com",
    ]
    assert sorted(zone.members) == ["api.example.com/v1", "app.example.com"]
    tunnel = job_for(Target.tunnel("t1"), decisions, last_version=None, prune=True)
    assert isinstance(tunnel.job, SyncTunnelIngress) and tunnel.job.version == tunnel.version
    assert sorted(tunnel.members) == ["api.example.com/v1", "app.example.com"]


def test_during_the_recovery_hold_jobs_keep_what_they_do_not_list_under_another_version() -> None:
    decisions = decided("app.example.com")
    pruned = job_for(Target.zone("example.com"), decisions, last_version=None, prune=True)
    held = job_for(Target.zone("example.com"), decisions, last_version=None, prune=False)
    assert isinstance(held.job, SyncDnsZone) and not held.job.prune
    assert held.version == pruned.version + ":held", "the first plan after the hold must send a job again"
    assert pruning(None, 600, 0.0) and not pruning(b"1000", 600, 1500.0) and pruning(b"1000", 600, 1600.0)
    assert pruning(b"not a time", 600, 0.0), "a value that is no time does not hold jobs back forever"


def test_a_rule_held_back_by_an_access_error_keeps_an_app_that_lets_nobody_in() -> None:
    decisions = decided("app.example.com", access=AccessSpec(groups=("missing",)))
    assert [d.verdict for d in decisions] == ["blocked"]
    kept = job_for(Target.access("app.example.com"), decisions, last_version="v1", prune=True)
    assert isinstance(kept.job, SyncAccessApp) and kept.job.app is not None
    assert [p.decision for p in kept.job.app.inline] == ["deny"]
    never = job_for(Target.access("app.example.com"), decisions, last_version=None, prune=True)
    assert never.job is None, "no app is made just to hold a rule back"
