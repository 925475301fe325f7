"""Read-only pages, rendered on the server from the same reads the admin API serves (no JavaScript needed).

Filters travel in the query string (``/ui/?status=error&q=shop``), so a filtered view is a link one can share.
Agents come from the read model plus keys that registered before the reconciler recorded them, exactly as
``GET /api/v1/agents`` lists them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from flareport_api import quotas, readstore
from flareport_api.apierror import ApiError
from flareport_api.schemas import AccessGroup, ManualRule
from flareport_api.state import ApiContext
from flareport_api.ui.guards import UI, page, render
from flareport_api.ui.sessions import Session
from flareport_api.usecases import accessgroups, agents, audit, manualrules, operations, rules
from flareport_api.usecases.agents import STATUSES
from flareport_api.usecases.rules import RULE_STATUSES
from flareport_api.validation import path_id
from flareport_common.messages.rules import AccessSpec

DEAD_LETTER_PAGE = 200
# The dashboard shows the newest admin actions (the whole list: GET /api/v1/audit, flareport audit).
DASHBOARD_AUDIT = 10


async def _common(request: web.Request, session: Session) -> dict[str, Any]:
    # A live refresh (the page script re-fetching itself) must not take the one-time notice: it may run while the
    # admin submits a form, and the notice belongs to the page that form's redirect renders.
    live = request.headers.get("X-Requested-With") == "live"
    return {"session": session, "flash": None if live else await request.app[UI].sessions.pop_flash(session)}


@page
async def dashboard(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    status = request.query.get("status", "")
    status = status if status in RULE_STATUSES else ""
    text = request.query.get("q", "").strip().lower()[:200]
    every = await rules.published(ctx)
    counts = Counter(r.status for r in every)

    def matches(rule: Any) -> bool:
        haystack = " ".join(
            str(v or "") for v in (rule.hostname, rule.service, rule.agent_id, rule.container_name, rule.zone_name)
        ).lower()
        return (not status or rule.status == status) and text in haystack

    known = await agents.known(ctx)
    return render(
        request,
        "dashboard.html",
        rules=[r for r in every if matches(r)],
        total=len(every),
        counts=counts,
        statuses=RULE_STATUSES,
        status=status,
        q=text,
        agent_names={a.agent_id: a.display_name for a in known.values()},
        audit=await audit.recent(ctx, DASHBOARD_AUDIT),
        **await _common(request, session),
    )


@page
async def agents_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    listed = sorted((await agents.known(ctx)).values(), key=lambda a: (a.display_name.lower(), a.agent_id))
    status = request.query.get("status", "")
    status = status if status in STATUSES else ""
    shown = [a for a in listed if not status or a.status == status]
    beats = {a.agent_id: await readstore.heartbeats(ctx.redis, ctx.keys, a.agent_id, limit=20) for a in shown}
    return render(
        request,
        "agents.html",
        agents=shown,
        statuses=STATUSES,
        status=status,
        heartbeats=beats,
        **await _common(request, session),
    )


@page
async def agent_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    agent_id = path_id(request.match_info["agent_id"], "agent_id")
    try:
        record = await agents.find(ctx, agent_id)
    except ApiError as exc:
        raise web.HTTPNotFound(text=f"no agent {agent_id}") from exc
    return render(
        request,
        "agent.html",
        agent=record,
        keys=await ctx.store.of_agent(agent_id),
        heartbeats=await readstore.heartbeats(ctx.redis, ctx.keys, agent_id, limit=40),
        commands=await readstore.command_history(ctx.redis, ctx.keys, agent_id),
        refusals=await quotas.refusals(ctx.redis, ctx.keys, agent_id),
        rules=await rules.matching(ctx, agent_id=agent_id),
        **await _common(request, session),
    )


@page
async def keys_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    return render(
        request,
        "keys.html",
        keys=list(reversed(await ctx.store.all())),
        created=None,
        **await _common(request, session),
    )


@page
async def manual_rules_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    stored = await manualrules.stored(ctx)
    manual = sorted(stored.values(), key=lambda r: r.rule.key)
    published = {r.manual_rule_id: r for r in await rules.matching(ctx, source="manual")}
    # ?edit=<rule id> fills the form with that rule; saving it updates the rule in place (same id). Only rules
    # the form can express fully are editable here, so an edit never drops a setting made through the API.
    editable = {m.rule_id for m in manual if form_can_edit_rule(m)}
    editing = stored.get(request.query.get("edit", ""))
    return render(
        request,
        "manual_rules.html",
        rules=manual,
        published=published,
        editable=editable,
        editing=editing if editing is not None and editing.rule_id in editable else None,
        origin_flags=ORIGIN_FLAGS,
        **await _common(request, session),
    )


@page
async def access_groups_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    groups = await accessgroups.every(ctx)  # the system groups first: shown, never editable or deletable
    editable = {g.group_id for g in groups if not g.system and form_can_edit_group(g)}
    editing = next((g for g in groups if g.group_id == request.query.get("edit") and g.group_id in editable), None)
    return render(
        request,
        "access_groups.html",
        groups=groups,
        editable=editable,
        editing=editing,
        **await _common(request, session),
    )


# The origin options that are on/off switches, with their labels in the manual-rule form. Each is a three-way
# choice (cloudflared's default, on, off): "not set" and "off" differ, and an edit must keep whichever it was.
ORIGIN_FLAGS = (
    ("no_tls_verify", "Skip TLS verification of the origin"),
    ("http2_origin", "HTTP/2 to the origin"),
    ("disable_chunked_encoding", "Disable chunked encoding"),
    ("match_sni_to_host", "Match SNI to the Host header"),
)


def form_can_edit_rule(manual: ManualRule) -> bool:
    """The form has fields for hostname, path, service, zone, agent/tunnel, every origin option, Access policy and
    groups; not for the other Access settings nor adoption."""
    rule = manual.rule
    access_ok = rule.access is None or rule.access == AccessSpec(policy=rule.access.policy, groups=rule.access.groups)
    return access_ok and not rule.adopt


def form_can_edit_group(group: AccessGroup) -> bool:
    """The form expresses include/exclude as emails and email domains only, and no require rules."""
    selectors = (*group.include, *group.exclude)
    return not group.require and all(set(s) <= {"email", "email_domain"} for s in selectors)


@page
async def dead_letters_page(request: web.Request, ctx: ApiContext, session: Session) -> web.StreamResponse:
    letters = await operations.newest_dead_letters(ctx, DEAD_LETTER_PAGE)
    return render(request, "dead_letters.html", letters=letters, **await _common(request, session))
