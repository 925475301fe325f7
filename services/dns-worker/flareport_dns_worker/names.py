"""Which record names the worker may send to Cloudflare at all: a pure check, run before any batch is built.

Cloudflare applies a ``dns_records/batch`` call in one transaction, so one name it refuses sinks every other
change of that call. The names come from agents (hostile input) through the reconciler, and the API validates
them too — but the worker is the last door before the shared zone, so it checks again here instead of trusting
every sender: a bad name becomes a per-record error of its own and the rest of the zone's changes go through in
one call.

The rules are the API's hostname rules (``flareport_common.validate.hostname``), which are at least as strict as
Cloudflare's for the names Flareport writes: LDH labels of 1-63 characters (letters, digits, inner ``-``), at
least two labels, at most 253 characters, ``*`` only as a whole first label, and no all-numeric last label.
The dns-worker cannot import the API package, and a copy of ten lines costs less than a new shared dependency.
"""

from __future__ import annotations

import re

MAX_NAME = 253
_LABEL_TEXT = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LABEL = re.compile(f"^{_LABEL_TEXT}$")
# The whole rule in one match, for the common case of a good name (checked for every record of every zone job);
# a name it refuses goes through the label-by-label check, which says what is wrong.
_GOOD_NAME = re.compile(rf"^(?:\*\.)?(?:{_LABEL_TEXT}\.)+{_LABEL_TEXT}$")


def bare(name: str) -> str:
    """``name`` as Cloudflare stores it: lower case, without the trailing dot."""
    lowered = name.lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a record Flareport writes, or None when it can."""
    host = bare(name)
    if len(host) <= MAX_NAME and _GOOD_NAME.match(host) and not host.rpartition(".")[2].isdigit():
        return None
    if not host or len(host) > MAX_NAME:
        return f"record name {name!r} must be 1-{MAX_NAME} characters"
    labels = host.split(".")
    if len(labels) < 2:
        return f"record name {name!r} must be fully qualified (e.g. app.example.com)"
    for index, label in enumerate(labels):
        if label == "*" and index == 0:
            continue
        if not _LABEL.match(label):
            return f"record name {name!r}: label {label!r} must be 1-63 letters, digits or inner '-'"
    if labels[-1].isdigit():
        return f"record name {name!r} must not end with a numeric label"
    return None


def base_of(name: str) -> str:
    """``name`` as Cloudflare stores it, without a leading ``*.``: the name a wildcard record sits under."""
    host = bare(name)
    return host[2:] if host.startswith("*.") else host


def inside(name: str, zone: str) -> bool:
    """Whether ``name`` is ``zone`` itself or a name under it (``*.x`` counts as under ``x``'s zone)."""
    host, base = base_of(name), bare(zone)
    return bool(base) and (host == base or host.endswith("." + base))
