"""Rule documents of the read model, from hostname decisions: which key, which fields, which status.

A refresh rewrites a hostname's documents from its decisions, but the Cloudflare state of each part (DNS record,
ingress rule, Access app) comes from job results. A part's state is kept across a refresh as long as what that
part depends on is unchanged — the record depends on hostname and tunnel only, so a new service keeps the record
``active`` while the ingress rule goes back to pending until its job's result — and the status is derived again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import msgspec

from flareport_common.readmodel import RuleRecord
from flareport_reconciler.records import rule_status, to_datetime
from flareport_reconciler.resolution import Decision, zone_of

DocsChange = Callable[[Mapping[str, RuleRecord | None]], Mapping[str, RuleRecord | None]]


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
