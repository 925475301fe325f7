"""Cloudflare's validation rules for one DNS record, as pure functions.

Cloudflare normalises and validates a record before storing it; Flareport's dns-worker relies
on those answers (a 81053 conflict is how it learns that a hostname is taken).  The rules here:

* names are lower-cased, a trailing dot is dropped, ``@`` means the apex and a single label
  (``www``) is relative to the zone; a dotted name outside the zone is rejected (9000);
* ``type`` must be one of the types Cloudflare serves (9020); content is checked for A
  (9005), AAAA (9006, stored in compressed form) and CNAME (9007, stored lower-case);
* ``ttl`` is 1 (automatic) or between the plan minimum (60, 30 on Enterprise) and 86400
  (9021); a proxied record always has ``ttl`` 1, as on Cloudflare;
* only A, AAAA and CNAME may be proxied (9041);
* comments are limited by plan (100 characters on Free, 500 otherwise; 9313);
* tags are ``name:value`` strings, at most ``max_record_tags`` (9300);
* a CNAME cannot share its name with an A, AAAA or CNAME (81053), an A/AAAA cannot share its
  name with a CNAME (81054), and an identical record (name, type, content, priority) is
  rejected (81058).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from flareport_cfemu import errors
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.errors import ApiError, bad_request

Json = dict[str, Any]

RECORD_TYPES = frozenset(
    [
        "A",
        "AAAA",
        "CAA",
        "CERT",
        "CNAME",
        "DNSKEY",
        "DS",
        "HTTPS",
        "LOC",
        "MX",
        "NAPTR",
        "NS",
        "OPENPGPKEY",
        "PTR",
        "SMIMEA",
        "SRV",
        "SSHFP",
        "SVCB",
        "TLSA",
        "TXT",
        "URI",
    ]
)
PROXIABLE_TYPES = frozenset({"A", "AAAA", "CNAME"})
PRIORITY_TYPES = frozenset({"MX", "SRV", "URI"})
HOSTNAME_CONTENT_TYPES = frozenset({"CNAME", "MX", "NS", "PTR"})
MAX_TTL = 86400
_LABEL = re.compile(r"^(\*|[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)\Z")


def _valid_hostname(name: str, *, allow_wildcard: bool) -> bool:
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    for index, label in enumerate(labels):
        if not _LABEL.match(label):
            return False
        if label == "*" and (index != 0 or not allow_wildcard):
            return False
    return True


def normalise_name(raw: Any, zone_name: str) -> str:
    """Full record name for ``raw`` inside ``zone_name`` (9000 when it cannot be one)."""
    if not isinstance(raw, str) or not raw.strip():
        raise bad_request(errors.DNS_NAME_INVALID, "DNS name is invalid.")
    name = raw.strip().rstrip(".").lower()
    if name in {"@", ""}:
        return zone_name
    if name != zone_name and not name.endswith("." + zone_name):
        if "." in name:
            raise bad_request(errors.DNS_NAME_INVALID, f"DNS name is invalid. {raw!r} is not in zone {zone_name}.")
        name = f"{name}.{zone_name}"
    if not _valid_hostname(name, allow_wildcard=True):
        raise bad_request(errors.DNS_NAME_INVALID, "DNS name is invalid.")
    return name


def _content(record_type: str, raw: Any, data: Any) -> str:
    if raw is None or raw == "":
        if data is not None or record_type not in {"A", "AAAA", "CNAME", "TXT", "MX", "NS", "PTR"}:
            return "" if raw is None else str(raw)
        raise bad_request(
            errors.DNS_VALIDATION, f"DNS Validation Error: content is required for {record_type} records."
        )
    if not isinstance(raw, str):
        raise bad_request(errors.DNS_VALIDATION, "DNS Validation Error: content must be a string.")
    if record_type == "A":
        try:
            return str(ipaddress.IPv4Address(raw.strip()))
        except ValueError:
            raise bad_request(errors.DNS_A_CONTENT, "Content for A record must be a valid IPv4 address.") from None
    if record_type == "AAAA":
        try:
            return str(ipaddress.IPv6Address(raw.strip()))
        except ValueError:
            raise bad_request(
                errors.DNS_AAAA_CONTENT, "Content for AAAA record must be a valid IPv6 address."
            ) from None
    if record_type in HOSTNAME_CONTENT_TYPES:
        host = raw.strip().rstrip(".").lower()
        if not _valid_hostname(host, allow_wildcard=False):
            code = errors.DNS_CNAME_CONTENT if record_type == "CNAME" else errors.DNS_VALIDATION
            raise bad_request(code, f"Content for {record_type} record is invalid.")
        return host
    return raw


def _ttl(raw: Any, *, proxied: bool, min_ttl: int) -> int:
    if raw is None:
        raw = 1
    if isinstance(raw, bool) or not isinstance(raw, int | float) or int(raw) != raw:
        raise bad_request(errors.DNS_TTL_INVALID, "TTL must be an integer.")
    ttl = int(raw)
    if ttl != 1 and not min_ttl <= ttl <= MAX_TTL:
        raise bad_request(
            errors.DNS_TTL_INVALID,
            f"Invalid TTL. Must be between {min_ttl} and {MAX_TTL} seconds, or 1 for Automatic.",
        )
    return 1 if proxied else ttl


def _tags(raw: Any, limit: int) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise bad_request(errors.DNS_TAGS_INVALID, "tags must be a list of 'name:value' strings.")
    tags = [t.strip() for t in raw]
    for tag in tags:
        if ":" not in tag or not tag.split(":", 1)[0]:
            raise bad_request(errors.DNS_TAGS_INVALID, f"Invalid tag {tag!r}: tags must look like 'name:value'.")
    if len(tags) > limit:
        raise bad_request(errors.DNS_TAGS_INVALID, f"A DNS record can have at most {limit} tags.")
    return tags


def validate_fields(fields: Json, zone: Json, config: EmulatorConfig) -> Json:
    """Normalised record fields from a request body (POST/PUT, or a PATCH merged onto a record)."""
    plan = str(zone.get("_plan", "free"))
    raw_type = fields.get("type")
    record_type = raw_type.upper() if isinstance(raw_type, str) else ""
    if record_type not in RECORD_TYPES:
        raise bad_request(errors.DNS_TYPE_INVALID, f"Invalid DNS record type {raw_type!r}.")
    name = normalise_name(fields.get("name"), zone["name"])
    proxied = fields.get("proxied")
    if proxied is None:
        proxied = False
    if not isinstance(proxied, bool):
        raise bad_request(errors.DNS_VALIDATION, "DNS Validation Error: proxied must be a boolean.")
    if proxied and record_type not in PROXIABLE_TYPES:
        raise bad_request(errors.DNS_NOT_PROXIABLE, "Invalid proxied mode. Record cannot be proxied.")
    comment = fields.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise bad_request(errors.DNS_VALIDATION, "DNS Validation Error: comment must be a string.")
    comment = comment or None
    limit = config.comment_limit_for(plan)
    if comment is not None and len(comment) > limit:
        raise bad_request(
            errors.DNS_COMMENT_TOO_LONG, f"DNS record comment exceeds the maximum length of {limit} characters."
        )
    out: Json = {
        "name": name,
        "type": record_type,
        "content": _content(record_type, fields.get("content"), fields.get("data")),
        "proxiable": record_type in PROXIABLE_TYPES,
        "proxied": proxied,
        "ttl": _ttl(fields.get("ttl"), proxied=proxied, min_ttl=config.min_ttl_for(plan)),
        "settings": dict(fields.get("settings") or {}),
        "meta": {},
        "comment": comment,
        "tags": _tags(fields.get("tags"), config.max_record_tags),
    }
    if record_type in PRIORITY_TYPES:
        priority = fields.get("priority")
        if isinstance(priority, bool) or not isinstance(priority, int | float) or not 0 <= priority <= 65535:
            raise bad_request(errors.DNS_VALIDATION, f"DNS Validation Error: priority is required for {record_type}.")
        out["priority"] = int(priority)
    if fields.get("data") is not None:
        out["data"] = fields["data"]
    return out


def _same_content(a: Json, b: Json) -> bool:
    return (
        str(a.get("content", "")).lower() == str(b.get("content", "")).lower()
        and a.get("priority") == b.get("priority")
        and a.get("data") == b.get("data")
    )


def check_conflicts(candidate: Json, others: Iterable[Json], *, self_id: str | None) -> None:
    """Raise Cloudflare's conflict error if ``candidate`` cannot join ``others``."""
    for other in others:
        if other["id"] == self_id or other["name"] != candidate["name"]:
            continue
        new_type, old_type = candidate["type"], other["type"]
        if new_type == "CNAME" and old_type in PROXIABLE_TYPES:
            if old_type == "CNAME" and _same_content(candidate, other):
                raise bad_request(errors.DNS_IDENTICAL, "An identical record already exists.")
            raise bad_request(errors.DNS_CNAME_CONFLICT, "An A, AAAA, or CNAME record with that host already exists.")
        if new_type in {"A", "AAAA"} and old_type == "CNAME":
            raise bad_request(errors.DNS_A_ON_CNAME, "A CNAME record with that host already exists.")
        if new_type == old_type and _same_content(candidate, other):
            raise bad_request(errors.DNS_IDENTICAL, "An identical record already exists.")


def batch_error(index_kind: str, index: int, error: ApiError) -> ApiError:
    """The error of one batch operation, naming which operation failed."""
    return ApiError(400, error.code, f"{error.message} ({index_kind}[{index}])")
