"""Which record names the worker may send to Cloudflare at all: a pure check, run before any batch is built.

Cloudflare applies a ``dns_records/batch`` call in one transaction, so one name it refuses sinks every other
change of that call. The names come from agents (hostile input) through the reconciler, and the API validates
them too — but the worker is the last door before the shared zone, so it checks again here instead of trusting
every sender: a bad name becomes a per-record error of its own and the rest of the zone's changes go through in
one call.

The rules are the shared hostname rules (``flareport_common.validate.hostname``, the ones the API and the
agent's label parser apply), which are at least as strict as Cloudflare's for the names Flareport writes: LDH
labels of 1-63 characters (letters, digits, inner ``-``), at least two labels, at most 253 characters, ``*`` only
as a whole first label, and no all-numeric last label.
"""

from __future__ import annotations

from flareport_common import validate
from flareport_common.validate import inside

__all__ = ["bare", "base_of", "inside", "name_problem"]


def bare(name: str) -> str:
    """``name`` as Cloudflare stores it: lower case, without the trailing dot."""
    lowered = name.lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a record Flareport writes, or None when it can."""
    try:
        validate.hostname(bare(name), "name")
    except validate.FieldError as error:
        return f"record name {name!r}: {error.reason}"
    return None


def base_of(name: str) -> str:
    """``name`` as Cloudflare stores it, without a leading ``*.``: the name a wildcard record sits under."""
    host = bare(name)
    return host[2:] if host.startswith("*.") else host
