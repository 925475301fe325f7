"""A target's Cloudflare job, from the decisions of the target's hostnames. Pure, no I/O.

The planner reads a target's hostnames and resolves them; what job that makes is decided here:

* the job carries the target's whole desired state (``targets``) and its version, a hash of that state: an
  unchanged target has an unchanged version, which ``coalesce`` does not send again;
* a target with nothing desired that never had a job sends none (``Built("", None)``); one that had a job gets a
  job that empties it (an Access app: ``app=None`` with the version ``absent``);
* during the recovery hold after a loss of data (``pruning``) zone and tunnel jobs keep what they do not list, and
  their version ends in ``:held`` so that the first plan after the hold sends a job again;
* ``members`` are the rule keys whose status the job's result sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from flareport_common.messages.cfjobs import CfJobMessage, SyncAccessApp, SyncDnsZone, SyncTunnelIngress
from flareport_reconciler.resolution import Decision
from flareport_reconciler.targets import Target, access_app, held_app, tunnel_ingress, version_of, zone_records

ABSENT = "absent"  # the version of an Access target that wants no app


@dataclass(frozen=True, slots=True)
class Built:
    version: str
    job: CfJobMessage | None
    members: tuple[str, ...] = ()


NOTHING = Built("", None)


def pruning(recovered_at: bytes | str | None, hold_seconds: float, now: float) -> bool:
    """Whether jobs may remove what they do not list: not while the recovery hold after a loss of data lasts."""
    if recovered_at is None:
        return True
    try:
        return now >= float(recovered_at) + hold_seconds
    except ValueError:
        return True


def job_for(target: Target, decisions: list[Decision], *, last_version: str | None, prune: bool) -> Built:
    """The job for ``target`` from the decisions of its hostnames; ``last_version`` is the version of the last
    job sent for it (None or empty: none, or forgotten)."""
    name = target.name
    held = "" if prune else ":held"
    if target.kind == "tunnel":
        rules = tunnel_ingress(name, decisions)
        if not rules and not last_version:
            return NOTHING
        version = version_of(rules) + held
        members = tuple(e.hostname + (e.path or "") for e in rules)
        return Built(version, SyncTunnelIngress(tunnel_id=name, version=version, rules=rules, prune=prune), members)
    if target.kind == "zone":
        records = zone_records(name, decisions)
        if not records and not last_version:
            return NOTHING
        names = {r.name for r in records}
        members = tuple(d.claim.rule.key for d in decisions if d.verdict == "winner" and d.claim.rule.hostname in names)
        version = version_of(records) + held
        return Built(version, SyncDnsZone(zone_name=name, version=version, records=records, prune=prune), members)
    app = access_app(name, decisions)
    if app is None and last_version and last_version != ABSENT:
        # A rule held back by an Access error keeps an app that lets nobody in until its routes are gone.
        app = held_app(name, decisions)
    if app is None and not last_version:
        return NOTHING
    version = version_of(app) if app is not None else ABSENT
    job = SyncAccessApp(hostname=target.hostname, path=target.path, version=version, app=app)
    return Built(version, job, (name,))
