"""The query language of ``GET /zones/{zone_id}/dns_records``.

The SDK serialises nested filters with dots (``name.exact=``, ``comment.contains=``,
``tag.present=``) and Flareport finds its own records with comment and name filters, so these
must behave as on Cloudflare:

* ``name``, ``content`` and ``comment`` take ``exact`` / ``contains`` / ``startswith`` /
  ``endswith`` (case-insensitive); the bare parameter means ``exact``;
* ``comment.present`` / ``comment.absent`` test for a comment at all;
* ``tag.present`` / ``tag.absent`` take a tag name; ``tag.exact`` / ``tag.contains`` /
  ``tag.startswith`` / ``tag.endswith`` take ``name:value``; ``tag_match`` combines tag filters;
* ``type`` and ``proxied`` are exact; ``search`` looks in name, content and comment;
* ``match=all`` (default) ANDs every filter group, ``match=any`` ORs them;
* ``order`` (type, name, content, ttl, proxied) and ``direction`` (asc, desc) sort the list
  before pagination; without ``order`` records come sorted by type, name, content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flareport_cfemu import errors
from flareport_cfemu.envelope import query_bool
from flareport_cfemu.errors import bad_request

Json = dict[str, Any]
Predicate = Callable[[Json], bool]
_OPS: dict[str, Callable[[str, str], bool]] = {
    "exact": lambda value, arg: value == arg,
    "contains": lambda value, arg: arg in value,
    "startswith": lambda value, arg: value.startswith(arg),
    "endswith": lambda value, arg: value.endswith(arg),
}
ORDERS = ("type", "name", "content", "ttl", "proxied")


def _text_pred(field: str, op: Callable[[str, str], bool], needle: str) -> Predicate:
    def pred(record: Json) -> bool:
        return op(str(record.get(field) or "").lower(), needle)

    return pred


def _text_filters(query: Any, field: str) -> list[Predicate]:
    preds: list[Predicate] = []
    for key, op_name in [(field, "exact")] + [(f"{field}.{op}", op) for op in _OPS]:
        for arg in query.getall(key, []):
            needle = arg.lower().rstrip(".") if field == "name" else arg.lower()
            preds.append(_text_pred(field, _OPS[op_name], needle))
    return preds


def _tag_pairs(record: Json) -> list[tuple[str, str]]:
    pairs = []
    for tag in record.get("tags") or []:
        name, _, value = str(tag).partition(":")
        pairs.append((name.lower(), value.lower()))
    return pairs


def _tag_present(name: str, *, present: bool) -> Predicate:
    def pred(record: Json) -> bool:
        return any(tag == name for tag, _ in _tag_pairs(record)) is present

    return pred


def _tag_value(name: str, value: str, op: Callable[[str, str], bool]) -> Predicate:
    def pred(record: Json) -> bool:
        return any(tag == name and op(val, value) for tag, val in _tag_pairs(record))

    return pred


def _tag_filters(query: Any) -> list[Predicate]:
    preds: list[Predicate] = [_tag_present(n.lower(), present=True) for n in query.getall("tag.present", [])]
    preds += [_tag_present(n.lower(), present=False) for n in query.getall("tag.absent", [])]
    for key, op_name in [("tag", "exact")] + [(f"tag.{op}", op) for op in _OPS]:
        for arg in query.getall(key, []):
            tag_name, _, tag_value = arg.lower().partition(":")
            preds.append(_tag_value(tag_name, tag_value, _OPS[op_name]))
    return preds


def _combine(preds: list[Predicate], mode: str) -> Predicate:
    if mode == "any":
        return lambda r: any(p(r) for p in preds)
    return lambda r: all(p(r) for p in preds)


def _mode(query: Any, key: str) -> str:
    mode = query.get(key, "all")
    if mode not in {"all", "any"}:
        raise bad_request(errors.INVALID_REQUEST, f"{key} must be 'all' or 'any'")
    return str(mode)


def build_predicate(query: Any) -> Predicate:
    """One predicate for the record filters in ``query`` (everything matches without filters)."""
    groups: list[Predicate] = []
    groups += _text_filters(query, "name") + _text_filters(query, "content") + _text_filters(query, "comment")
    if "comment.present" in query:
        groups.append(lambda r: bool(r.get("comment")))
    if "comment.absent" in query:
        groups.append(lambda r: not r.get("comment"))
    types = {t.upper() for t in query.getall("type", [])}
    if types:
        groups.append(lambda r: r["type"] in types)
    proxied = query_bool(query, "proxied")
    if proxied is not None:
        groups.append(lambda r: r["proxied"] is proxied)
    search = query.get("search")
    if search:
        needle = search.lower()
        groups.append(lambda r: any(needle in str(r.get(f) or "").lower() for f in ("name", "content", "comment")))
    tag_preds = _tag_filters(query)
    if tag_preds:
        groups.append(_combine(tag_preds, _mode(query, "tag_match")))
    if not groups:
        return lambda r: True
    return _combine(groups, _mode(query, "match"))


def select(records: Iterable[Json], query: Any) -> list[Json]:
    """Filter and sort ``records`` as Cloudflare's list endpoint does."""
    predicate = build_predicate(query)
    order = query.get("order")
    if order is not None and order not in ORDERS:
        raise bad_request(errors.INVALID_REQUEST, f"order must be one of {', '.join(ORDERS)}")
    direction = query.get("direction", "asc")
    if direction not in {"asc", "desc"}:
        raise bad_request(errors.INVALID_REQUEST, "direction must be 'asc' or 'desc'")
    chosen = [r for r in records if predicate(r)]
    keys = (order,) if order else ("type", "name", "content")
    chosen.sort(key=lambda r: (*(_sort_key(r.get(k)) for k in keys), r["id"]), reverse=direction == "desc")
    return chosen


def _sort_key(value: Any) -> tuple[float, str]:
    if isinstance(value, bool | int | float):
        return float(value), ""
    return 0.0, str(value or "")
