"""The Cloudflare emulator's indexes and caches agree with the data they stand for, whatever changes it.

ZoneRecords' index by name is compared, after every kind of change, with a scan of the records; the token
registry's cache of default policies never hides a registered token; the state's dump, its live view and the
request log's snapshot give what they did before they got cheaper.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from flareport_cfemu.requestlog import RequestEntry, RequestLog
from flareport_cfemu.state import EmulatorState
from flareport_cfemu.tokens import TokenRegistry
from flareport_cfemu.zone_records import ZoneRecords

NAMES = ("a.example.com", "b.example.com", "c.example.com")


def _record(record_id: str, name: str) -> dict[str, Any]:
    return {"id": record_id, "name": name, "type": "TXT", "content": record_id}


def _assert_indexed(records: ZoneRecords) -> None:
    """``named`` answers exactly what a scan of the records finds, for every name (and none for others)."""
    for name in {*NAMES, *(r["name"] for r in records.values())}:
        scanned = {i: r for i, r in records.items() if r["name"] == name}
        assert dict(records.named(name)) == scanned, name
    assert dict(records.named("nowhere.example.com")) == {}


def test_every_change_through_the_mapping_keeps_the_index_by_name() -> None:
    records = ZoneRecords({"1": _record("1", NAMES[0]), "2": _record("2", NAMES[0])})
    _assert_indexed(records)
    records["1"] = _record("1", NAMES[1])  # a rename: the old name lets go of it
    _assert_indexed(records)
    records.put(_record("3", NAMES[2]))
    del records["2"]
    _assert_indexed(records)
    assert records.pop("3")["name"] == NAMES[2]
    assert records.pop("missing", None) is None
    _assert_indexed(records)
    assert records.setdefault("4", _record("4", NAMES[0]))["id"] == "4"
    assert records.setdefault("4", _record("4", NAMES[2]))["name"] == NAMES[0], "setdefault keeps what is there"
    records.update({"5": _record("5", NAMES[1])}, **{"6": _record("6", NAMES[2])})
    records |= {"1": _record("1", NAMES[2])}
    _assert_indexed(records)
    record_id, _ = records.popitem()
    assert record_id not in records
    _assert_indexed(records)
    records.clear()
    _assert_indexed(records)
    assert all(not records.named(name) for name in NAMES)


def test_a_random_run_of_changes_keeps_the_index_by_name() -> None:
    chooser = random.Random(7)
    records = ZoneRecords()
    for _ in range(2000):
        record_id = str(chooser.randrange(30))
        action = chooser.randrange(4)
        if action == 0:
            records[record_id] = _record(record_id, chooser.choice(NAMES))
        elif action == 1:
            records.pop(record_id, None)
        elif action == 2 and record_id in records:
            del records[record_id]
        else:
            records.update({record_id: _record(record_id, chooser.choice(NAMES))})
        _assert_indexed(records)


def test_a_copy_has_its_own_index() -> None:
    records = ZoneRecords({"1": _record("1", NAMES[0])})
    duplicate = copy.deepcopy(records)
    assert isinstance(duplicate, ZoneRecords) and duplicate == records
    duplicate["2"] = _record("2", NAMES[0])
    assert set(duplicate.named(NAMES[0])) == {"1", "2"}
    assert set(records.named(NAMES[0])) == {"1"}


def test_a_loaded_or_reset_state_indexes_its_records() -> None:
    state = EmulatorState.load({"format": 1, "dns_records": {"z": {"1": _record("1", NAMES[0])}}})
    assert set(state.records_of("z").named(NAMES[0])) == {"1"}
    state.reset()
    assert state.dns_records == {} and not state.records_of("z").named(NAMES[0])


def test_a_plain_dict_put_in_the_state_from_outside_is_indexed() -> None:
    state = EmulatorState()
    state.dns_records["z"] = {"1": _record("1", NAMES[0])}  # type: ignore[assignment]
    assert set(state.records_of("z").named(NAMES[0])) == {"1"}


def test_the_dump_is_a_plain_copy_with_the_live_views_content() -> None:
    state = EmulatorState()
    zone = state.add_zone(name="example.com", account_id="acc")
    state.records_of(zone["id"]).put({**_record("1", NAMES[0]), "tags": ["k:v"], "settings": {"x": [1]}})
    dumped = state.dump()
    assert dumped == json.loads(json.dumps(state.view()))
    assert type(dumped["dns_records"][zone["id"]]) is dict
    dumped["dns_records"][zone["id"]]["1"]["tags"].append("other:w")
    dumped["zones"][zone["id"]]["meta"]["step"] = 9
    assert state.records_of(zone["id"])["1"]["tags"] == ["k:v"], "the dump shares nothing with the state"
    assert state.zones[zone["id"]]["meta"]["step"] == 2


def test_a_registered_token_wins_over_its_cached_default_and_clear_forgets_it() -> None:
    registry = TokenRegistry()
    default = registry.policy("tok")
    assert registry.policy("tok") is default and default.permissions is None
    registered = registry.register({"token": "tok", "status": "disabled"})
    assert registry.policy("tok") is registered
    registry.clear()
    again = registry.policy("tok")
    assert again.status == "active" and again.id == default.id, "a default policy's id stays the token's own"


def test_the_cache_of_default_policies_is_bounded() -> None:
    registry = TokenRegistry()
    first = registry.policy("t0")
    for index in range(1, TokenRegistry.DEFAULTS_KEPT + 1):
        registry.policy(f"t{index}")
    assert registry.policy("t0") is not first, "a flood of tokens pushed the first one out"
    assert registry.policy("t0").id == first.id


def test_a_snapshot_of_the_request_log_keeps_the_last_limit_entries() -> None:
    log = RequestLog(max_entries=10)
    for index in range(3):
        log.record(RequestEntry("GET", f"/p{index}", "GET /p", 200, "2024-01-01T00:00:00.000000Z", 1.0, None))
    assert log.snapshot(limit=0)["requests"] == [], "limit=0 reads the counters only"
    assert [e["path"] for e in log.snapshot(limit=2)["requests"]] == ["/p1", "/p2"]
    assert [e["path"] for e in log.snapshot()["requests"]] == ["/p0", "/p1", "/p2"]
    assert log.snapshot(limit=0)["counters"] == {"GET /p": 3}
    assert log.snapshot(limit=1)["requests"][0] == {
        "method": "GET",
        "path": "/p2",
        "endpoint": "GET /p",
        "status": 200,
        "timestamp": "2024-01-01T00:00:00.000000Z",
        "duration_ms": 1.0,
        "fault": None,
    }
