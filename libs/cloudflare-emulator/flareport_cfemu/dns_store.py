"""DNS record operations on :class:`EmulatorState`, including the atomic batch.

Each operation validates with :mod:`dns_rules` against the zone's current records and only
then stores the new record, so a rejected write never leaves a trace.  The batch endpoint
applies deletes, patches, puts and posts in that order - Cloudflare's documented order - to a
working copy of the zone's records and swaps the copy in only when every operation passed;
any failure rolls the whole batch back, as Cloudflare's single database transaction does.
Stored records are never mutated in place (every write builds a new dict), which is what makes
a shallow copy of the zone's mapping a valid transaction snapshot.

A batch checks each write against the records under the same name only, found through an index of the working
copy built once per batch: a check against every record of the zone made a batch of 200 writes cost 200 scans of
a zone that holds 20,000 records (Cloudflare's own store is indexed by name).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flareport_cfemu import errors
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.dns_rules import batch_error, check_conflicts, validate_fields
from flareport_cfemu.errors import ApiError, bad_request, not_found
from flareport_cfemu.state import EmulatorState, new_hex_id, now_iso, public

Json = dict[str, Any]
PATCHABLE = ("name", "type", "content", "ttl", "proxied", "comment", "tags", "settings", "priority", "data")


def _not_found() -> ApiError:
    return not_found(errors.DNS_RECORD_NOT_FOUND, "Record does not exist.")


def _stamp(record: Json, previous: Json | None, field: str, stamp: str, now: str) -> None:
    """Set ``<field>_modified_on`` like Cloudflare: only when the field is set, kept if unchanged."""
    if not record[field]:
        return
    unchanged = previous is not None and previous.get(field) == record[field] and stamp in previous
    record[stamp] = previous[stamp] if unchanged and previous is not None else now


class _ByName:
    """The records of a batch's working copy by name, kept up to date with every operation of the batch."""

    def __init__(self, records: dict[str, Json]) -> None:
        self._names: dict[str, dict[str, Json]] = {}
        for record in records.values():
            self._names.setdefault(record["name"], {})[record["id"]] = record

    def under(self, name: str) -> Iterable[Json]:
        return self._names.get(name, {}).values()

    def put(self, record: Json, previous: Json | None) -> None:
        if previous is not None and previous["name"] != record["name"]:
            self.drop(previous)
        self._names.setdefault(record["name"], {})[record["id"]] = record

    def drop(self, record: Json) -> None:
        self._names.get(record["name"], {}).pop(record["id"], None)


def _build(fields: Json, *, record_id: str, previous: Json | None) -> Json:
    now = now_iso()
    created = previous["created_on"] if previous is not None else now
    record: Json = {"id": record_id, **fields, "created_on": created, "modified_on": now}
    _stamp(record, previous, "comment", "comment_modified_on", now)
    _stamp(record, previous, "tags", "tags_modified_on", now)
    return record


def _write(
    records: dict[str, Json],
    zone: Json,
    config: EmulatorConfig,
    body: Json,
    *,
    previous: Json | None,
    by_name: _ByName | None = None,
) -> Json:
    fields = validate_fields(body, zone, config)
    quota = config.record_quota_for(str(zone.get("_plan", "free")), str(zone.get("created_on") or ""))
    if previous is None and quota is not None and len(records) >= quota:
        raise bad_request(
            errors.DNS_RECORD_QUOTA, f"Record quota exceeded. This zone may hold at most {quota} records."
        )
    record_id = previous["id"] if previous else new_hex_id()
    others = records.values() if by_name is None else by_name.under(fields["name"])
    check_conflicts(fields, others, self_id=record_id if previous else None)
    record = _build(fields, record_id=record_id, previous=previous)
    records[record_id] = record
    if by_name is not None:
        by_name.put(record, previous)
    return record


def _merged(previous: Json, body: Json) -> Json:
    merged = {key: previous.get(key) for key in PATCHABLE if key in previous}
    merged.update({key: value for key, value in body.items() if key in PATCHABLE})
    return merged


def get_record(state: EmulatorState, zone_id: str, record_id: str, path: str) -> Json:
    state.zone(zone_id, path)
    record = state.records_of(zone_id).get(record_id)
    if record is None:
        raise _not_found()
    return public(record)


def create_record(state: EmulatorState, config: EmulatorConfig, zone_id: str, body: Json, path: str) -> Json:
    zone = state.zone(zone_id, path)
    record = _write(state.records_of(zone_id), zone, config, body, previous=None)
    state.touch()
    return public(record)


def replace_record(
    state: EmulatorState, config: EmulatorConfig, zone_id: str, record_id: str, body: Json, path: str
) -> Json:
    """PUT: the body is the whole record; omitted optional fields return to their defaults."""
    zone = state.zone(zone_id, path)
    records = state.records_of(zone_id)
    previous = records.get(record_id)
    if previous is None:
        raise _not_found()
    record = _write(records, zone, config, body, previous=previous)
    state.touch()
    return public(record)


def patch_record(
    state: EmulatorState, config: EmulatorConfig, zone_id: str, record_id: str, body: Json, path: str
) -> Json:
    zone = state.zone(zone_id, path)
    records = state.records_of(zone_id)
    previous = records.get(record_id)
    if previous is None:
        raise _not_found()
    record = _write(records, zone, config, _merged(previous, body), previous=previous)
    state.touch()
    return public(record)


def delete_record(state: EmulatorState, zone_id: str, record_id: str, path: str) -> Json:
    state.zone(zone_id, path)
    records = state.records_of(zone_id)
    if records.pop(record_id, None) is None:
        raise _not_found()
    state.touch()
    return {"id": record_id}


def _ops(body: Json, key: str) -> list[Json]:
    ops = body.get(key)
    if ops is None:
        return []
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise bad_request(errors.DNS_VALIDATION, f"DNS Validation Error: {key} must be a list of objects.")
    return ops


def batch(state: EmulatorState, config: EmulatorConfig, zone_id: str, body: Json, path: str) -> Json:
    """Apply deletes, patches, puts, posts atomically; the result lists the affected records."""
    zone = state.zone(zone_id, path)
    deletes, patches, puts, posts = (_ops(body, key) for key in ("deletes", "patches", "puts", "posts"))
    size = len(deletes) + len(patches) + len(puts) + len(posts)
    limit = config.batch_limit_for(str(zone.get("_plan", "free")))
    if size > limit:
        raise bad_request(
            errors.DNS_BATCH_TOO_LARGE,
            f"Batch contains {size} operations; this zone's plan allows at most {limit} per request.",
        )
    working = dict(state.records_of(zone_id))
    by_name = _ByName(working) if size else None
    result: dict[str, list[Json]] = {"deletes": [], "patches": [], "puts": [], "posts": []}
    for kind, ops in (("deletes", deletes), ("patches", patches), ("puts", puts), ("posts", posts)):
        for index, op in enumerate(ops):
            try:
                result[kind].append(public(_batch_op(kind, op, working, by_name, zone, config)))
            except ApiError as error:
                raise batch_error(kind, index, error) from None
    state.dns_records[zone_id] = working
    if size:
        state.touch()
    return result


def _batch_op(
    kind: str, op: Json, working: dict[str, Json], by_name: _ByName | None, zone: Json, config: EmulatorConfig
) -> Json:
    if kind == "posts":
        return _write(working, zone, config, op, previous=None, by_name=by_name)
    record_id = op.get("id")
    previous = working.get(record_id) if isinstance(record_id, str) else None
    if previous is None:
        raise _not_found()
    if kind == "deletes":
        del working[previous["id"]]
        if by_name is not None:
            by_name.drop(previous)
        return previous
    if kind == "patches":
        return _write(working, zone, config, _merged(previous, op), previous=previous, by_name=by_name)
    return _write(working, zone, config, op, previous=previous, by_name=by_name)
