"""Table and time rendering of the admin CLI."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from flareport_cli.admin import render
from flareport_cli.admin.ops import stream_rows
from flareport_cli.admin.rules import detail, source


def _table(headers: tuple[str, ...], rows: list[list[object]]) -> str:
    out = io.StringIO()
    render.table(headers, rows, out=out)
    return out.getvalue()


def test_columns_are_as_wide_as_their_widest_cell_and_the_last_is_not_padded() -> None:
    text = _table(("ID", "NAME", "NOTE"), [["a", "longer name", None], ["bbbb", "x", "last"]])
    assert text.splitlines() == [
        "ID    NAME         NOTE",
        "a     longer name  -",
        "bbbb  x            last",
    ]


def test_an_empty_table_says_none() -> None:
    assert _table(("A", "B"), []) == "(none)\n"


def test_cells_render_missing_bools_and_lists_readably() -> None:
    values: tuple[object, ...] = (None, "", [], True, False, ("a", "b"), "two\nlines", 3)
    assert [render.cell(v) for v in values] == [
        "-", "-", "-", "yes", "no", "a,b", "two lines", "3",
    ]  # fmt: skip


def test_fields_align_values() -> None:
    out = io.StringIO()
    render.fields([("id", "x"), ("long name", None)], out=out)
    assert out.getvalue() == "id:        x\nlong name: -\n"


def test_times_are_shortened_to_utc_seconds() -> None:
    assert render.when("2026-03-04T05:06:07.123456+00:00") == "2026-03-04 05:06:07"
    assert render.when("2026-03-04T07:06:07+02:00") == "2026-03-04 05:06:07"
    assert render.when("2026-03-04T05:06:07Z") == "2026-03-04 05:06:07"
    assert render.when(None) == "-"
    assert render.when("soon") == "soon"


def test_ages_use_the_largest_unit() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert render.age("2026-01-01T11:59:50+00:00", now) == "10s ago"
    assert render.age("2026-01-01T11:57:00+00:00", now) == "3m ago"
    assert render.age("2026-01-01T09:00:00+00:00", now) == "3h ago"
    assert render.age("2025-12-29T12:00:00+00:00", now) == "3d ago"
    assert render.age("2026-01-01T14:00:00+00:00", now) == "in 2h"
    assert render.age(None, now) == "-"


def test_rule_source_and_detail() -> None:
    assert source({"source": "manual", "manual_rule_id": "mr_1"}) == "manual mr_1"
    assert source({"source": "container", "agent_id": "a1", "container_name": "web"}) == "a1/web"
    assert source({"source": "container", "agent_id": "a1", "container_id": "abc"}) == "a1/abc"
    assert detail({"status": "error", "error": "denied", "error_code": 10000}) == "denied (Cloudflare 10000)"
    assert detail({"status": "conflict", "error": "claimed by agent b"}) == "claimed by agent b"
    assert detail({"status": "active"}) is None


def test_status_rows_put_each_group_on_its_own_line_under_its_stream() -> None:
    streams = [
        {"stream": "fp:events", "length": 5, "groups": [{"name": "r", "consumers": 1, "pending": 2, "lag": 0},
                                                        {"name": "x", "consumers": 0, "pending": 0, "lag": None}]},
        {"stream": "fp:empty", "length": 0, "groups": []},
    ]  # fmt: skip
    assert stream_rows(streams) == [
        ["fp:events", 5, "r", 1, 2, 0],
        ["", "", "x", 0, 0, None],
        ["fp:empty", 0, None, None, None, None],
    ]
