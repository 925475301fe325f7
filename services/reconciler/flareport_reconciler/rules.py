"""Rule documents and their statuses, in one place: from a hostname's decisions and from job results. Pure.

A rule document (``RuleRecord``) is what the API shows of one claim. Its key says whether it won: a winner is
documented under its rule key (``hostname + path``), a losing claim under ``<rule key>@<source>``. A refresh
rewrites a hostname's documents from its decisions (``template``, ``merge_docs``); a conflict or a denial is decided
there, by resolution. Every other status comes from the rule's parts — its DNS record (zone job), its ingress rule
(tunnel job) and, when it asks for one, its Access app — whose states only job results set (``with_result``):
``active``, or ``error`` / ``conflict`` with Cloudflare's code and message when the worker reports a problem with
that hostname (and path). A part's state is kept across a refresh as long as what that part depends on is
unchanged (``carry_states``): the record depends on hostname and tunnel only, so a new service keeps the record
``active`` while the ingress rule goes back to pending until its job's result. ``rule_status`` derives the status
from the parts, the same way for both paths.

The store (``records.update_rules``) applies these changes under a compare-and-set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import msgspec

from flareport_common.messages.cfresults import CfError, JobResult
from flareport_common.readmodel import RuleRecord, RuleStatus
from flareport_reconciler.resolution import Decision, zone_of
from flareport_reconciler.targets import wants_access

# What ``records.update_rules`` applies: current documents by key to new ones (None deletes).
DocsChange = Callable[[Mapping[str, RuleRecord | None]], Mapping[str, RuleRecord | None]]


def to_datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def rule_status(doc: RuleRecord) -> tuple[RuleStatus, str | None]:
    """The status the API shows, derived from the rule's parts (a conflict or denial is decided before)."""
    if doc.delete_at is not None:
        return "pending_deletion", doc.error
    states = [doc.dns_state, doc.ingress_state]
    if wants_access(doc.access):
        states.append(doc.access_state)
    if "conflict" in states:
        return "conflict", doc.error
    if "error" in states:
        return "error", doc.error
    if all(s == "active" for s in states):
        return "active", None
    return "pending", None


def doc_key(decision: Decision) -> str:
    """Winners are documented under their rule key; a losing claim under ``<rule key>@<source>``."""
    key = decision.claim.rule.key
    return key if decision.verdict == "winner" else f"{key}@{decision.claim.source}"


def template(d: Decision) -> RuleRecord:
    claim, rule = d.claim, d.claim.rule
    doc = RuleRecord(
        key=doc_key(d),
        hostname=rule.hostname,
        service=rule.service,
        path=rule.path,
        source="manual" if claim.manual_rule_id else "container",
        agent_id=claim.agent_id,
        container_id=claim.container_id,
        container_name=claim.container_name,
        manual_rule_id=claim.manual_rule_id,
        zone_name=zone_of(rule),
        tunnel_id=d.tunnel_id,
        origin=rule.origin,
        access=rule.access,
        delete_at=to_datetime(claim.delete_at),
        overridden=claim.overridden,
    )
    if d.verdict == "conflict":
        doc.status, doc.error = "conflict", d.reason
    elif d.verdict in ("denied", "blocked"):
        doc.status, doc.error = "error", d.reason
    return doc


def carry_states(old: RuleRecord | None, doc: RuleRecord) -> None:
    """Keep the applied state of every part of ``doc`` whose inputs did not change since ``old``."""
    if old is None:
        return
    dns = (old.hostname, old.tunnel_id) == (doc.hostname, doc.tunnel_id)
    ingress = dns and (old.service, old.path, old.origin) == (doc.service, doc.path, doc.origin)
    access = dns and (old.path, old.access) == (doc.path, doc.access)
    doc.dns_state = old.dns_state if dns else None
    doc.ingress_state = old.ingress_state if ingress else None
    doc.access_state = old.access_state if access else None
    kept = {"dns": dns, "ingress": ingress, "access": access}
    doc.adopted = {part: what for part, what in old.adopted.items() if kept.get(part)}
    if dns and ingress and access:
        doc.error, doc.error_code = old.error, old.error_code


def merge_docs(docs: Mapping[str, RuleRecord]) -> DocsChange:
    """The change for ``update_rules``: new documents with the applied state carried over; others deleted."""

    def change(current: Mapping[str, RuleRecord | None]) -> Mapping[str, RuleRecord | None]:
        result: dict[str, RuleRecord | None] = dict.fromkeys(current)
        now = to_datetime(time.time())
        for name, fresh in docs.items():
            doc = msgspec.structs.replace(fresh)
            old = current.get(name)
            if doc.status not in ("conflict", "error"):  # those are decided by resolution, not by Cloudflare
                carry_states(old, doc)
                doc.status, doc.error = rule_status(doc)
            doc.updated_at = old.updated_at if old is not None else None
            if old is None or doc != old:
                doc.updated_at = now
            result[name] = doc
        return result

    return change


# The part of a rule a job type applies, as named in ``RuleRecord.adopted``.
PARTS = {"sync_dns_zone": "dns", "sync_tunnel_ingress": "ingress", "sync_access_app": "access"}
STATE_FIELDS = {
    "sync_dns_zone": "dns_state",
    "sync_tunnel_ingress": "ingress_state",
    "sync_access_app": "access_state",
}


def error_for(doc: RuleRecord, errors: tuple[CfError, ...]) -> CfError | None:
    for error in errors:
        if error.hostname is None or error.hostname.lower() != doc.hostname.lower():
            continue
        if error.path is None or error.path == doc.path:
            return error
    return None


def with_result(doc: RuleRecord, result: JobResult) -> RuleRecord:
    """The document after ``result`` of a job that carried this rule."""
    field = STATE_FIELDS[result.job_type]
    doc = msgspec.structs.replace(doc)
    error = error_for(doc, result.errors)
    if error is None and not result.ok:
        error = result.errors[0] if result.errors else CfError(message=f"{result.job_type} failed")
    if error is None:
        setattr(doc, field, "active")
    else:
        setattr(doc, field, "conflict" if error.kind == "conflict" else "error")
    status, message = rule_status(doc)
    doc.status = status
    doc.error = error.message if error is not None else message
    doc.error_code = error.code if error is not None and error.code else None
    if status in ("active", "pending"):
        doc.error, doc.error_code = None, None
    for note in result.notes:
        if note.hostname.lower() == doc.hostname.lower() and (note.path is None or note.path == doc.path):
            doc.adopted = {**doc.adopted, PARTS[result.job_type]: note.message}
    return doc


def result_change(result: JobResult) -> DocsChange | None:
    """The change a job's result makes to the documents of the rules it carried (its members), or None when the
    job type sets no part of a rule. A conflict that never had a part applied is resolution's, and stays."""
    if result.job_type not in STATE_FIELDS:
        return None

    def change(current: Mapping[str, RuleRecord | None]) -> Mapping[str, RuleRecord | None]:
        now = to_datetime(time.time())
        updated: dict[str, RuleRecord | None] = {}
        for name, doc in current.items():
            if doc is None or (doc.status == "conflict" and doc.dns_state is None and doc.ingress_state is None):
                updated[name] = doc
                continue
            new = with_result(doc, result)
            if new != doc:
                new.updated_at = now
            updated[name] = new
        return updated

    return change
