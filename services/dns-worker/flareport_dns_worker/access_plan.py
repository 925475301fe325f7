"""Access planning: the self-hosted application (and reusable policies) a host+path should have.

Pure functions from a ``DesiredAccessApp`` — already resolved by the reconciler (``flareport_common.access``):
every group, system group and label turned into policies — to Cloudflare request bodies, and the comparisons
that decide whether a write is needed:

* ``reusable`` -> one account-level reusable policy per group, named ``flareport group <group id>`` with the
  group's policy as content, linked to the app in the order given (precedence 1, 2, ...);
* ``inline`` -> app-scoped policies, in the order given.

Cloudflare refuses an app that mixes the two kinds ("Reusable and inline policies are mutually exclusive", its API
schema), and an app with no policy lets nobody in or — worse, next to a zone's wildcard app — means something the
reconciler did not decide; so ``app_problem`` refuses both before anything is sent (fail closed: the app already in
Cloudflare, if any, stays as it is).

The app's ``domain`` is the host (lower-cased) plus the path with its trailing ``/`` removed (``/`` itself stays),
as DockFlare writes it. A path is a literal prefix for Access (``*`` wildcards allowed): one with a character of a
regular expression is refused, as Cloudflare would refuse it.

Our apps carry the account tag ``flareport`` (configurable); an app on the same domain without it was
made by someone else and is never touched — the result reports a conflict instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flareport_common.messages.cfjobs import AccessPolicyDef, DesiredAccessApp, ReusablePolicyRef
from flareport_common.messages.cfresults import CfError

GROUP_POLICY_PREFIX = "flareport group "
CONFLICT_CODE = 12130
# Characters of a regular expression (and whitespace) that an Access path cannot hold; ``*`` is Access's wildcard.
PATH_FORBIDDEN = frozenset("^$()[]{}|\\+?")


def app_path(path: str | None) -> str:
    """The path part of an app's domain: a leading ``/``, trailing ``/`` removed except for ``/`` itself."""
    if not path or not path.strip():
        return ""
    cleaned = path.strip()
    if not cleaned.startswith("/"):
        cleaned = "/" + cleaned
    return cleaned.rstrip("/") or "/"


def app_domain(hostname: str, path: str | None) -> str:
    return hostname.strip().lower().rstrip(".") + app_path(path)


def group_policy_name(group_id: str) -> str:
    return GROUP_POLICY_PREFIX + group_id


def unique_refs(app: DesiredAccessApp) -> list[ReusablePolicyRef]:
    """The app's groups in order, each once (a group named twice is linked once, at its first place)."""
    seen: set[str] = set()
    refs: list[ReusablePolicyRef] = []
    for ref in app.reusable:
        if ref.group_id not in seen:
            seen.add(ref.group_id)
            refs.append(ref)
    return refs


def app_problem(app: DesiredAccessApp) -> str | None:
    """Why this app must not be written (it would not say what the reconciler meant), or None."""
    domain = app_domain(app.hostname, app.path)
    if app.reusable and app.inline:
        return (
            f"the Access application for {domain} has both reusable ({len(app.reusable)}) and inline "
            f"({len(app.inline)}) policies; Cloudflare does not mix them in one application, and Flareport does not "
            "guess which to drop: nothing was written"
        )
    if not app.reusable and not app.inline:
        return f"the Access application for {domain} has no policy: nothing was written (fail closed)"
    path = app_path(app.path)
    bad = sorted({c for c in path if c in PATH_FORBIDDEN or c.isspace()})
    if bad:
        return (
            f"the Access application path {app.path!r} holds {''.join(bad)!r}: an Access path is a literal prefix "
            "(with '*' wildcards), never a regular expression; nothing was written"
        )
    return None


def policy_body(policy: AccessPolicyDef, *, name: str | None = None) -> dict[str, Any]:
    """A policy as Cloudflare takes it (``POST``/``PUT access/policies``, or inline in an app)."""
    body: dict[str, Any] = {
        "name": name or policy.name,
        "decision": policy.decision,
        "include": [dict(rule) for rule in policy.include],
    }
    if policy.exclude:
        body["exclude"] = [dict(rule) for rule in policy.exclude]
    if policy.require:
        body["require"] = [dict(rule) for rule in policy.require]
    if policy.session_duration:
        body["session_duration"] = policy.session_duration
    return body


def reusable_policy_body(ref: ReusablePolicyRef) -> dict[str, Any]:
    """The account-level policy of one group: the group's policy, named ``flareport group <group id>``."""
    return policy_body(ref.policy, name=group_policy_name(ref.group_id))


def app_body(app: DesiredAccessApp, tag: str, policy_ids: Sequence[str] = ()) -> dict[str, Any]:
    """The full body of ``POST``/``PUT /access/apps`` (a PUT replaces the app as a whole). For an app with
    reusable policies, ``policy_ids`` are their ids, in the order of ``unique_refs(app)``."""
    domain = app_domain(app.hostname, app.path)
    if app.reusable:
        refs = unique_refs(app)
        if len(policy_ids) != len(refs):
            raise ValueError(f"{len(refs)} reusable policies but {len(policy_ids)} ids")
        policies = [{"id": policy_id, "precedence": index + 1} for index, policy_id in enumerate(policy_ids)]
    else:
        policies = [{**policy_body(policy), "precedence": index + 1} for index, policy in enumerate(app.inline)]
    body: dict[str, Any] = {
        "type": "self_hosted",
        "name": app.name or domain,
        "domain": domain,
        "session_duration": app.session_duration or "24h",
        "app_launcher_visible": app.app_launcher_visible,
        "auto_redirect_to_identity": app.auto_redirect_to_identity,
        "tags": [tag],
        "policies": policies,
    }
    if app.allowed_idps:
        body["allowed_idps"] = list(app.allowed_idps)
    return body


def is_ours(current: Mapping[str, Any], tag: str) -> bool:
    return tag in (current.get("tags") or [])


def _content_matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """A policy's documented content (name, decision, include, exclude, require, and session and precedence when
    we set them) is what we want."""
    for key in ("name", "decision", "include"):
        if current.get(key) != wanted.get(key):
            return False
    for key in ("exclude", "require"):
        if list(current.get(key) or []) != list(wanted.get(key) or []):
            return False
    return all(current.get(key) == wanted[key] for key in ("session_duration", "precedence") if key in wanted)


def policy_matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """A reusable policy as Cloudflare returns it already has the wanted content: no ``PUT`` needed."""
    return _content_matches(current, wanted)


def _by_precedence(policies: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(policies, key=lambda p: (not isinstance(p.get("precedence"), int), p.get("precedence") or 0))


def app_matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """True when ``current`` (as Cloudflare returns it) already is ``wanted`` (an ``app_body``): no write needed.

    Only fields Cloudflare documents for an app's policies are compared: a link to a reusable policy by its ``id``
    and ``precedence``, an app-scoped policy by its content and ``precedence`` (its id is Cloudflare's to choose).
    An app whose policies are of the other kind never matches: their ids are not our reusable policies' ids, and
    their content is not our inline content.
    """
    for key, value in wanted.items():
        if key in ("policies", "allowed_idps", "domain"):
            continue
        if current.get(key) != value:
            return False
    if str(current.get("domain") or "").lower() != str(wanted.get("domain") or "").lower():
        return False  # whether Cloudflare keeps a path's case is not documented: either spelling is the same app
    if list(current.get("allowed_idps") or []) != list(wanted.get("allowed_idps") or []):
        return False
    have = _by_precedence(current.get("policies") or [])
    want = list(wanted.get("policies") or [])
    if len(have) != len(want):
        return False
    for got, expected in zip(have, want, strict=True):
        if "decision" not in expected:  # a link to a reusable policy
            if (got.get("id"), got.get("precedence")) != (expected.get("id"), expected.get("precedence")):
                return False
        elif not _content_matches(got, expected):
            return False
    return True


# DockFlare names its apps "DockFlare-<hostname>" (or the access.name label) and tags none of them.
DOCKFLARE_APP_PREFIX = "DockFlare-"


def dockflare_app(current: Mapping[str, Any], desired: DesiredAccessApp) -> bool:
    """Is ``current`` (found on the desired app's domain) an app DockFlare made for this hostname?

    Only asked when the operator opted in to adopting DockFlare's apps: an untagged self-hosted app named as
    DockFlare names them, on exactly the domain the rule wants.
    """
    name = str(current.get("name") or "")
    named = name.startswith(DOCKFLARE_APP_PREFIX) or (desired.name is not None and name == desired.name)
    domain = str(current.get("domain") or "").lower()
    return (
        named
        and not current.get("tags")
        and str(current.get("type") or "self_hosted") == "self_hosted"
        and domain == app_domain(desired.hostname, desired.path).lower()
    )


def foreign_app_conflict(hostname: str, path: str | None, current: Mapping[str, Any], tag: str) -> CfError:
    return CfError(
        code=CONFLICT_CODE,
        message=(
            f"Access application {current.get('name')!r} on {app_domain(hostname, path)} has no {tag!r} tag: "
            "it was not made by Flareport and is left untouched (an app DockFlare made is adopted when "
            "FLAREPORT_ADOPT_DOCKFLARE_ACCESS is set)"
        ),
        hostname=hostname,
        path=path,
        kind="conflict",
    )
