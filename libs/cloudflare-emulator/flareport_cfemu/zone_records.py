"""The DNS records of one zone (record id -> record), with an index of the records by name.

Cloudflare checks a write against the records under the same name only (CNAME exclusivity, identical records).
Scanning the zone per write, or indexing it once per batch, cost the whole zone per request: 20,000 records
looked at for every batch of the "20,000 hostnames" benchmark. :class:`ZoneRecords` is the stored mapping itself
and keeps its index through every change made with the mapping interface, so every path that stores, replaces or
removes a record - the API, seeds, a loaded state, a test reaching into the state - keeps the index right without
knowing it exists. Stored records are never changed in place (every write stores a new dict), which is what
keeps an index by the stored ``name`` true.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, overload

Json = dict[str, Any]
T = TypeVar("T")
_MISSING: Any = object()
_NONE: Mapping[str, Json] = {}


class ZoneRecords(dict[str, Json]):
    """A zone's records by id; :meth:`named` answers the records under one name without a scan."""

    __slots__ = ("_names",)

    def __init__(self, records: Mapping[str, Json] | Iterable[tuple[str, Json]] = (), /) -> None:
        super().__init__(records)
        self._names: dict[str, dict[str, Json]] = {}
        for record_id, record in self.items():
            self._index(record_id, record)

    def named(self, name: str) -> Mapping[str, Json]:
        """The records (by id) whose name is ``name``; a live view, not to be changed."""
        return self._names.get(name, _NONE)

    def put(self, record: Json) -> None:
        """Store ``record`` under its id (a new record, or the new version of one)."""
        self[record["id"]] = record

    # --- the mapping interface, each change mirrored in the index ---------------------------------------------

    def __setitem__(self, record_id: str, record: Json) -> None:
        self._unindex(record_id)
        super().__setitem__(record_id, record)
        self._index(record_id, record)

    def __delitem__(self, record_id: str) -> None:
        self._unindex(record_id)  # before the delete: the index finds the record's name through the mapping
        super().__delitem__(record_id)

    @overload
    def pop(self, record_id: str, /) -> Json: ...
    @overload
    def pop(self, record_id: str, default: Json, /) -> Json: ...
    @overload
    def pop(self, record_id: str, default: T, /) -> Json | T: ...
    def pop(self, record_id: str, default: Any = _MISSING, /) -> Any:
        self._unindex(record_id)
        return super().pop(record_id) if default is _MISSING else super().pop(record_id, default)

    def popitem(self) -> tuple[str, Json]:
        record_id, record = super().popitem()
        self._drop(record_id, record)
        return record_id, record

    def clear(self) -> None:
        super().clear()
        self._names.clear()

    def setdefault(self, record_id: str, default: Json, /) -> Json:
        if record_id not in self:
            self[record_id] = default
        return self[record_id]

    def update(self, *others: Any, **records: Json) -> None:
        for record_id, record in dict(*others, **records).items():
            self[record_id] = record

    def __ior__(self, other: Any) -> ZoneRecords:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __reduce__(self) -> tuple[type[ZoneRecords], tuple[dict[str, Json]]]:
        # copy.deepcopy and pickle rebuild through __init__, so a copy gets its own index.
        return ZoneRecords, (dict(self),)

    # --- the index ------------------------------------------------------------------------------------------

    def _index(self, record_id: str, record: Json) -> None:
        self._names.setdefault(record["name"], {})[record_id] = record

    def _unindex(self, record_id: str) -> None:
        record = self.get(record_id)
        if record is not None:
            self._drop(record_id, record)

    def _drop(self, record_id: str, record: Json) -> None:
        named = self._names[record["name"]]
        del named[record_id]
        if not named:  # names come and go with the records: no empty entries piling up
            del self._names[record["name"]]
