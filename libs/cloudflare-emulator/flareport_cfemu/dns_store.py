"""DNS record operations on :class:`EmulatorState`, including the atomic batch.

Each operation validates with :mod:`dns_rules` against the zone's current records and only
then stores the new record, so a rejected write never leaves a trace.  The batch endpoint
applies deletes, patches, puts and posts in that order - Cloudflare's documented order - to a
:class:`_Pending` set of writes over the zone's records and stores them only when every operation
passed; any failure leaves the zone as it was, as Cloudflare's single database transaction does.
Stored records are never mutated in place (every write builds a new dict), so the pending writes
and the stored records never share a changed object.

Each write is checked against the records under the same name only (Cloudflare's own store is indexed by name),
through the zone's index by name (zone_records.py) and the batch's own writes: what a batch costs grows with the
batch, not with the zone (a zone of 20,000 records was copied and indexed whole for every batch before).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from flareport_cfemu import errors
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.dns_rules import batch_error, check_conflicts, validate_fields
from flareport_cfemu.errors import ApiError, bad_request, not_found
from flareport_cfemu.state import EmulatorState, new_hex_id, now_iso, public
from flareport_cfemu.zone_records import ZoneRecords

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


class _Records(Protocol):
    """What a write needs of the records it joins: the stored zone, or a batch's pending view of it."""

    def __len__(self) -> int: ...

    def named(self, name: str) -> Mapping[str, Json]: ...

    def put(self, record: Json) -> None: ...


class _Pending:
    """A batch's writes over the zone's stored records, stored by :meth:`commit` once every operation passed.

    Reads see the zone as the batch has changed it so far; the stored records and their index stay untouched until
    the commit, so a refused batch leaves nothing behind without a copy of the zone to throw away.
    """

    def __init__(self, stored: ZoneRecords) -> None:
        self._stored = stored
        # record id -> its new version, or None once deleted; in the order of first write, which the commit keeps
        self._writes: dict[str, Json | None] = {}
        self._names: dict[str, dict[str, Json]] = {}  # the new versions by name, then id
        self._count = len(stored)

    def __len__(self) -> int:
        return self._count

    def get(self, record_id: str) -> Json | None:
        if record_id in self._writes:
            return self._writes[record_id]
        return self._stored.get(record_id)

    def named(self, name: str) -> Mapping[str, Json]:
        stored = {i: r for i, r in self._stored.named(name).items() if i not in self._writes}
        return stored | self._names.get(name, {})

    def put(self, record: Json) -> None:
        record_id = record["id"]
        if self.get(record_id) is None:
            self._count += 1
        self._forget(record_id)
        self._writes[record_id] = record
        self._names.setdefault(record["name"], {})[record_id] = record

    def delete(self, record_id: str) -> None:
        self._forget(record_id)
        self._writes[record_id] = None
        self._count -= 1

    def commit(self) -> None:
        """Store the writes: a changed record keeps its place in the zone, a new one goes last, as they were made."""
        for record_id, record in self._writes.items():
            if record is None:
                del self._stored[record_id]
            else:
                self._stored[record_id] = record

    def _forget(self, record_id: str) -> None:
        written = self._writes.get(record_id)
        if written is not None:
            del self._names[written["name"]][record_id]


def _build(fields: Json, *, record_id: str, previous: Json | None) -> Json:
    now = now_iso()
    created = previous["created_on"] if previous is not None else now
    record: Json = {"id": record_id, **fields, "created_on": created, "modified_on": now}
    _stamp(record, previous, "comment", "comment_modified_on", now)
    _stamp(record, previous, "tags", "tags_modified_on", now)
    return record


def _write(records: _Records, zone: Json, config: EmulatorConfig, body: Json, *, previous: Json | None) -> Json:
    fields = validate_fields(body, zone, config)
    quota = config.record_quota_for(str(zone.get("_plan", "free")), str(zone.get("created_on") or ""))
    if previous is None and quota is not None and len(records) >= quota:
        raise bad_request(
            errors.DNS_RECORD_QUOTA, f"Record quota exceeded. This zone may hold at most {quota} records."
        )
    record_id = previous["id"] if previous else new_hex_id()
    check_conflicts(fields, records.named(fields["name"]).values(), self_id=record_id if previous else None)
    record = _build(fields, record_id=record_id, previous=previous)
    records.put(record)
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
    pending = _Pending(state.records_of(zone_id))
    result: dict[str, list[Json]] = {"deletes": [], "patches": [], "puts": [], "posts": []}
    for kind, ops in (("deletes", deletes), ("patches", patches), ("puts", puts), ("posts", posts)):
        for index, op in enumerate(ops):
            try:
                result[kind].append(public(_batch_op(kind, op, pending, zone, config)))
            except ApiError as error:
                raise batch_error(kind, index, error) from None
    pending.commit()
    if size:
        state.touch()
    return result


def _batch_op(kind: str, op: Json, pending: _Pending, zone: Json, config: EmulatorConfig) -> Json:
    if kind == "posts":
        return _write(pending, zone, config, op, previous=None)
    record_id = op.get("id")
    previous = pending.get(record_id) if isinstance(record_id, str) else None
    if previous is None:
        raise _not_found()
    if kind == "deletes":
        pending.delete(previous["id"])
        return previous
    if kind == "patches":
        return _write(pending, zone, config, _merged(previous, op), previous=previous)
    return _write(pending, zone, config, op, previous=previous)
