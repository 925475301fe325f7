"""Rule statuses from Cloudflare job results.

A rule is ``active`` when every part of it is applied: its DNS record (zone job), its ingress rule (tunnel job)
and, when it asks for one, its Access app. Each job result sets that part's state for the rules the job carried
(recorded as the job's members when it was sent): ``active``, or ``error`` / ``conflict`` with Cloudflare's
code and message when the worker reports a problem with that hostname (and path).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import msgspec
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages.cfresults import CfError, JobResult
from flareport_common.readmodel import RuleRecord
from flareport_reconciler.records import rule_status, to_datetime, update_rules

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


async def apply_result_to_rules(redis: aioredis.Redis, keys: Keys, result: JobResult, members: list[str]) -> None:
    if result.job_type not in STATE_FIELDS or not members:
        return

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

    await update_rules(redis, keys, members, change)
