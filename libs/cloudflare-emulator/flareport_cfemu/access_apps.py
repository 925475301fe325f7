"""Access applications: create/replace with policy links, inline policies and tags.

Split from :mod:`access_store` (policies and tags) to keep each module about one concept.
``PUT`` replaces the application as a whole, like Cloudflare: fields left out return to their
defaults, and app-scoped policies no longer referenced are deleted with the old version.

As strict as Cloudflare where Flareport could get it wrong:

* an app links reusable policies *or* carries inline (app-scoped) ones, never both ("Reusable and inline policies
  are mutually exclusive", Cloudflare's API schema); the code of that refusal is not documented, the emulator
  answers 400 with the Access error code 12130;
* a self-hosted ``domain`` is a host (letters, digits, ``-``, ``_``, ``*`` wildcard labels, an optional port) and
  optionally a path of literal characters and ``*`` wildcards: no character of a regular expression
  (``^ $ ( ) [ ] { } | \\ + ?``), no whitespace;
* ``self_hosted_domains``, when given, must include ``domain`` (Cloudflare's
  ``access.api.error.invalid_request: domain not included in self_hosted_domains``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from flareport_cfemu import errors
from flareport_cfemu.access_store import (
    APP_DEFAULTS,
    APP_TYPES,
    DURATION_RE,
    create_policy,
    invalid,
    missing,
    render_policy,
    reusable_policy,
    tags_of,
)
from flareport_cfemu.errors import ApiError
from flareport_cfemu.state import EmulatorState, new_uuid, now_iso, public

Json = dict[str, Any]
MANAGED = frozenset({"id", "uid", "aud", "created_at", "updated_at", "policies", "type", "domain", "name"})
HOST_LABEL = re.compile(r"^(\*|[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)$")
PATH_FORBIDDEN = frozenset("^$()[]{}|\\+?")


def domain_problem(domain: str) -> str | None:
    """Why Cloudflare would not take ``domain`` (host plus optional path) for a self-hosted app, or None."""
    host, slash, path = domain.partition("/")
    name, _, port = host.partition(":")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(HOST_LABEL.match(label) for label in labels) or len(labels) < 2:
        return f"domain {domain!r} does not start with a valid hostname"
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return f"domain {domain!r} has an invalid port"
    bad = sorted({c for c in path if c in PATH_FORBIDDEN or c.isspace()})
    if slash and bad:
        return (
            f"domain {domain!r} has a path with {''.join(bad)!r}: a path is literal characters with '*' wildcards, "
            "not a regular expression"
        )
    return None


def lookup_app(state: EmulatorState, account_id: str, app_id: str) -> Json:
    app = state.access_apps.get(app_id)
    if app is None or app["_account_id"] != account_id:
        raise missing("application")
    return app


def render_app(state: EmulatorState, app: Json) -> Json:
    out = public(app)
    out.pop("uid", None)  # not a field of the SDK's application models
    out["policies"] = [
        render_policy(state, state.access_policies[link["id"]], link["precedence"], embedded=True)
        for link in sorted(app["_policy_links"], key=lambda link: link["precedence"])
        if link["id"] in state.access_policies
    ]
    return out


def _links(state: EmulatorState, account_id: str, app_id: str, raw: Any) -> list[Json]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid("policies must be a list")
    kinds = {isinstance(item, dict) and "decision" in item for item in raw}
    if len(kinds) > 1:  # checked before any inline policy is created: a refused write leaves nothing behind
        raise invalid(
            "an application's policies are either reusable policy links or inline policies: reusable and inline "
            "policies are mutually exclusive"
        )
    links: list[Json] = []
    for index, item in enumerate(raw):
        entry = {"id": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise invalid(f"policies[{index}] must be a policy id or object")
        precedence = entry.get("precedence", index + 1)
        if isinstance(precedence, bool) or not isinstance(precedence, int) or precedence < 1:
            raise invalid(f"policies[{index}].precedence must be a positive integer")
        if "decision" in entry:
            existing = state.access_policies.get(str(entry.get("id")))
            if existing is not None and existing.get("_app_id") == app_id:
                policy_id = existing["id"]
            else:
                policy_id = create_policy(state, account_id, entry, app_id=app_id)["id"]
        else:
            policy_id = str(entry.get("id"))
            existing = state.access_policies.get(policy_id)
            if existing is None or existing.get("_app_id") not in (None, app_id):
                reusable_policy(state, account_id, policy_id)
        links.append({"id": policy_id, "precedence": precedence})
    precedences = [link["precedence"] for link in links]
    if len(set(precedences)) != len(precedences):
        raise invalid("policy precedence must be unique within an application")
    return links


def _app_fields(state: EmulatorState, account_id: str, app_id: str, body: Json) -> Json:
    app_type = body.get("type")
    if app_type not in APP_TYPES:
        raise invalid(f"type must be one of {', '.join(sorted(APP_TYPES))}")
    domain = body.get("domain")
    if app_type == "self_hosted" and (not isinstance(domain, str) or not domain.strip()):
        raise invalid("domain is required for self_hosted applications")
    host, slash, path = str(domain or "").strip().partition("/")
    domain = host.lower() + slash + path  # the host is case-insensitive; a path keeps its case
    if app_type == "self_hosted":
        problem = domain_problem(domain)
        if problem is not None:
            raise invalid(problem)
        hosted = body.get("self_hosted_domains")
        if hosted is not None:
            if not isinstance(hosted, list) or not all(isinstance(d, str) for d in hosted):
                raise invalid("self_hosted_domains must be a list of domains")
            if domain.lower() not in [d.strip().lower() for d in hosted]:
                raise invalid("domain not included in self_hosted_domains")
    for other in state.access_apps.values():
        if (
            other["_account_id"] == account_id
            and other["id"] != app_id
            and domain
            and str(other.get("domain") or "").lower() == domain.lower()
        ):
            raise ApiError(409, errors.ACCESS_APP_EXISTS, "access.api.error.application_already_exists")
    duration = body.get("session_duration", "24h")
    if not isinstance(duration, str) or not DURATION_RE.match(duration):
        raise invalid(f"session_duration {duration!r} is not a duration like '24h' or '30m'")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise invalid("tags must be a list of tag names")
    known = tags_of(state, account_id)
    for tag in tags:
        if tag not in known:
            raise invalid(f"tag {tag!r} does not exist; create it with POST /accounts/{account_id}/access/tags")
    fields: Json = {**APP_DEFAULTS, **{k: v for k, v in body.items() if k not in MANAGED}}
    name = body.get("name")
    fields.update(
        {
            "type": app_type,
            "name": name if isinstance(name, str) and name.strip() else domain,
            "domain": domain,
            "session_duration": duration,
            "tags": list(tags),
        }
    )
    if app_type == "self_hosted":
        fields.setdefault("self_hosted_domains", [domain])
        fields.setdefault("destinations", [{"type": "public", "uri": domain}])
    return fields


def create_app(state: EmulatorState, account_id: str, body: Json) -> Json:
    app_id = new_uuid()
    fields = _app_fields(state, account_id, app_id, body)
    links = _links(state, account_id, app_id, body.get("policies"))
    now = now_iso()
    app = {
        "id": app_id,
        "uid": app_id,
        "aud": secrets.token_hex(32),
        **fields,
        "created_at": now,
        "updated_at": now,
        "_account_id": account_id,
        "_policy_links": links,
    }
    state.access_apps[app_id] = app
    state.touch()
    return render_app(state, app)


def _drop_orphans(state: EmulatorState, app: Json) -> None:
    linked = {link["id"] for link in app["_policy_links"]}
    for policy_id, policy in list(state.access_policies.items()):
        if policy.get("_app_id") == app["id"] and policy_id not in linked:
            del state.access_policies[policy_id]


def replace_app(state: EmulatorState, account_id: str, app_id: str, body: Json) -> Json:
    app = lookup_app(state, account_id, app_id)
    fields = _app_fields(state, account_id, app_id, body)
    links = _links(state, account_id, app_id, body.get("policies"))
    kept = {k: app[k] for k in ("id", "uid", "aud", "created_at", "_account_id")}
    app.clear()
    app.update({**kept, **fields, "updated_at": now_iso(), "_policy_links": links})
    _drop_orphans(state, app)
    state.touch()
    return render_app(state, app)


def delete_app(state: EmulatorState, account_id: str, app_id: str) -> Json:
    app = lookup_app(state, account_id, app_id)
    app["_policy_links"] = []
    _drop_orphans(state, app)
    del state.access_apps[app_id]
    state.touch()
    return {"id": app_id}


def list_apps(state: EmulatorState, account_id: str, query: Any) -> list[Json]:
    exact = str(query.get("exact", "")).lower() == "true"
    wanted = {key: str(query[key]).lower() for key in ("name", "domain", "aud") if query.get(key)}
    search = str(query.get("search") or "").lower()
    chosen = []
    for app in state.access_apps.values():
        if app["_account_id"] != account_id:
            continue
        values = {key: str(app.get(key) or "").lower() for key in wanted}
        if any((values[k] != v) if exact or k == "aud" else (v not in values[k]) for k, v in wanted.items()):
            continue
        if search and not any(search in str(app.get(f) or "").lower() for f in ("name", "domain")):
            continue
        chosen.append(app)
    chosen.sort(key=lambda a: (a["created_at"], a["id"]))
    return [render_app(state, a) for a in chosen]


def app_policy(state: EmulatorState, app: Json, policy_id: str) -> tuple[Json, int]:
    for link in app["_policy_links"]:
        if link["id"] == policy_id and policy_id in state.access_policies:
            return state.access_policies[policy_id], link["precedence"]
    raise missing("policy")


def add_app_policy(state: EmulatorState, account_id: str, app: Json, body: Json) -> Json:
    precedence = body.get("precedence")
    if precedence is None:
        precedence = max((link["precedence"] for link in app["_policy_links"]), default=0) + 1
    if isinstance(precedence, bool) or not isinstance(precedence, int) or precedence < 1:
        raise invalid("precedence must be a positive integer")
    if any(link["precedence"] == precedence for link in app["_policy_links"]):
        raise invalid("policy precedence must be unique within an application")
    if any(state.access_policies.get(link["id"], {}).get("reusable") for link in app["_policy_links"]):
        raise invalid("this application links reusable policies: reusable and inline policies are mutually exclusive")
    policy = create_policy(state, account_id, body, app_id=app["id"])
    app["_policy_links"].append({"id": policy["id"], "precedence": precedence})
    app["updated_at"] = now_iso()
    return render_policy(state, policy, precedence)


def remove_app_policy(state: EmulatorState, app: Json, policy_id: str) -> Json:
    policy, _ = app_policy(state, app, policy_id)
    app["_policy_links"] = [link for link in app["_policy_links"] if link["id"] != policy_id]
    if not policy["reusable"]:
        del state.access_policies[policy_id]
    state.touch()
    return {"id": policy_id}
