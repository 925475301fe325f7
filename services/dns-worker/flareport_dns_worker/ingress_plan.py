"""Tunnel ingress planning: the configuration a tunnel should have, from what it has and what we want.

cloudflared's ingress rules carry no field where an owner marker could live, so ownership is kept beside
them: for every tunnel the worker remembers (in Redis, as observed state) the set of rule keys —
``hostname + path`` — that it wrote. A rule in the current configuration whose key is not in that set was
written by someone else (the dashboard, another tool) and is preserved, in its order. When that set is lost
(Redis without its data) the worker only claims rules whose key it wants now: it never deletes a rule it
cannot prove is its own, at the price of possibly leaving one stale rule behind until someone removes it.

The configuration produced is: our rules in the desired order, then every foreign rule in its original
order, then exactly one catch-all ``http_status:404``. Our rules come first so that a broad foreign rule
(``*.example.com``) cannot shadow a specific one of ours. A foreign rule on a key we want is a conflict:
it stays, ours is left out and reported — unless it is exactly the rule we would write (same hostname, path,
service and origin options). Such a rule is taken as ours: adopting it changes no routing, and it is how our own
rule looks when Redis lost the last moments of writes (a crash under ``appendfsync everysec``) after the PUT
went through but before the worker's record of it was persisted. The same holds for a protected path's rule in the
form DockFlare writes it (the literal path, unanchored, e.g. ``/admin``) with our service and origin options: it
routes the same requests to the same service plus any path that merely contains ``/admin``, around the Access app;
it is taken as ours and replaced by the anchored rule. Top-level settings (``originRequest``, ``warp-routing``)
are kept.

With ``prune=False`` (the control plane is rebuilding after a loss of its data and may not know every rule
yet) a rule of ours that is no longer wanted is kept like a foreign one, in its original order among them,
and stays owned, so that the next plan that prunes removes it.

Everything here is pure; ``changed`` tells the caller whether a PUT is needed at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flareport_common.goregex import go_regex_error
from flareport_common.messages.cfjobs import IngressEntry
from flareport_common.messages.cfresults import CfError
from flareport_common.messages.rules import OriginOptions

CATCH_ALL: dict[str, Any] = {"service": "http_status:404"}
CONFLICT_CODE = 1055
INVALID_PATH_CODE = 1055

# Flareport's OriginOptions field -> cloudflared's originRequest key.
ORIGIN_KEYS = (
    ("no_tls_verify", "noTLSVerify"),
    ("origin_server_name", "originServerName"),
    ("http_host_header", "httpHostHeader"),
    ("http2_origin", "http2Origin"),
    ("disable_chunked_encoding", "disableChunkedEncoding"),
    ("match_sni_to_host", "matchSNItoHost"),
)


def rule_key(hostname: str | None, path: str | None) -> str:
    return (hostname or "").lower() + (path or "")


def origin_request(origin: OriginOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ours, theirs in ORIGIN_KEYS:
        value = getattr(origin, ours)
        if value is not None:
            out[theirs] = value
    return out


def written_path(entry: IngressEntry) -> str | None:
    """The ``path`` cloudflared gets. It matches a path as an unanchored regular expression; a path an Access app
    protects (a literal prefix, never a regex: the reconciler refuses those) is anchored to exactly what the app
    covers, the prefix and everything below it: ``/eng`` -> ``^/eng(/.*)?$``, so ``/x/eng`` and ``/engineering``
    are not routed to the protected service."""
    if not entry.path or not entry.protected:
        return entry.path
    return "^" + entry.path.rstrip("/").replace(".", "\\.") + "(/.*)?$"


def path_error(entry: IngressEntry) -> CfError | None:
    """A per-rule error when cloudflared (Go's RE2) would refuse the rule's path: Cloudflare refuses such a
    configuration as a whole, so the rule is left out and the tunnel's other rules still converge."""
    path = written_path(entry)
    reason = go_regex_error(path) if path else None
    if reason is None:
        return None
    return CfError(
        code=INVALID_PATH_CODE,
        message=f"path {path!r} is not a regular expression cloudflared accepts (RE2): {reason}; rule left out",
        hostname=entry.hostname,
        path=entry.path,
        kind="invalid",
    )


def entry_rule(entry: IngressEntry) -> dict[str, Any]:
    rule: dict[str, Any] = {"hostname": entry.hostname.lower(), "service": entry.service}
    path = written_path(entry)
    if path:
        rule["path"] = path
    options = origin_request(entry.origin)
    if options:
        rule["originRequest"] = options
    return rule


def is_catch_all(rule: Mapping[str, Any]) -> bool:
    return rule.get("hostname") in (None, "", "*") and not rule.get("path")


def normalise(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A rule without the empty fields Cloudflare may echo back, so that equal rules compare equal."""
    return {k: v for k, v in rule.items() if v not in (None, "", {}, [])}


@dataclass(slots=True)
class IngressPlan:
    config: dict[str, Any]
    changed: bool
    owned: set[str] = field(default_factory=set)
    conflicts: list[CfError] = field(default_factory=list)
    foreign: int = 0
    # Rules of ours no longer wanted but kept because the plan does not prune (their keys are in ``owned``).
    kept: int = 0


def plan_ingress(
    current: Mapping[str, Any] | None,
    desired: Sequence[IngressEntry],
    owned: Iterable[str] | None,
    *,
    prune: bool = True,
) -> IngressPlan:
    """The configuration to PUT (and whether it differs from ``current``).

    ``owned`` is the set of rule keys we wrote to this tunnel, or None when that knowledge is lost.
    ``prune=False`` keeps our rules that are not in ``desired`` (after the desired ones) instead of removing them.
    """
    config = dict(current or {})
    rules: list[Mapping[str, Any]] = list(config.get("ingress") or [])
    wanted = {rule_key(e.hostname, written_path(e)): e for e in desired}
    # A protected path's rule as DockFlare writes it (the literal path) -> the rule it would be with that path.
    literal = {
        rule_key(e.hostname, e.path): {**entry_rule(e), "path": e.path}
        for e in desired
        if e.path and written_path(e) != e.path
    }
    known = set(owned) if owned is not None else set(wanted)
    # Every rule that stays as it is, foreign or kept, in its original order after ours.
    others: list[dict[str, Any]] = []
    kept: set[str] = set()
    foreign = 0
    conflicts: list[CfError] = []
    blocked: set[str] = set()
    for rule in rules:
        if is_catch_all(rule):
            continue
        key = rule_key(rule.get("hostname"), rule.get("path"))
        if key not in known and key in wanted and normalise(rule) == entry_rule(wanted[key]):
            known.add(key)  # exactly what we would write: ours (see the module docstring)
        elif key not in known and key not in wanted and normalise(rule) == literal.get(key):
            known.add(key)  # ours in DockFlare's unanchored form: replaced by the anchored rule
        if key in known:
            if key not in wanted and not prune and key not in kept:
                kept.add(key)
                others.append(normalise(rule))
            continue  # ours: rewritten below from the desired state (or dropped when no longer wanted)
        foreign += 1
        others.append(normalise(rule))
        if key in wanted:
            blocked.add(key)
            conflicts.append(
                CfError(
                    code=CONFLICT_CODE,
                    message=(
                        f"tunnel already routes {key} to {rule.get('service')!r} with a rule Flareport did not "
                        "write; left untouched"
                    ),
                    hostname=wanted[key].hostname,
                    path=wanted[key].path,
                    kind="conflict",
                )
            )
    ours: list[dict[str, Any]] = []
    seen: set[str] = set()
    for key, entry in wanted.items():
        if key in blocked or key in seen:
            continue
        reason = path_error(entry)
        if reason is not None:
            conflicts.append(reason)
            continue
        seen.add(key)
        ours.append(entry_rule(entry))
    new_rules = [*ours, *others, dict(CATCH_ALL)]
    config["ingress"] = new_rules
    changed = [normalise(r) for r in rules] != new_rules
    return IngressPlan(
        config=config, changed=changed, owned=seen | kept, conflicts=conflicts, foreign=foreign, kept=len(kept)
    )
