"""The web UI, served by the API at ``/`` (``/ui/...``): server-rendered Jinja2 pages, small vanilla JS, no build step.

``setup(app)`` is the only entry point: it adds the UI's routes (named ``ui-*`` so the OpenAPI document, which
describes the JSON API only, can leave them out), its Jinja2 environment, and a cleanup context that runs after
the API's own (it needs the Redis client) to settle the admin password and run the live-update watcher.
Design and security notes: docs/web-ui.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web

from flareport_api.state import CONTEXT, SETTINGS
from flareport_api.ui import actions, backups, live, login, oidc, pages, ruleactions, ruleoverride, tunnels
from flareport_api.ui.guards import JINJA, UI, UiContext, environment
from flareport_api.ui.sessions import LoginBrake, Sessions, admin_password_hash

ROUTE_PREFIX = "ui-"


async def _to_ui(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


async def _ui_ctx(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CONTEXT]
    settings = ctx.settings
    password_hash = await admin_password_hash(settings, ctx.redis, ctx.keys)
    app[UI] = UiContext(
        sessions=Sessions(ctx.redis, ctx.keys, settings, password_hash),
        brake=LoginBrake(ctx.redis, ctx.keys, settings.ui_login_limit, settings.ui_login_window_seconds),
        password_hash=password_hash,
    )
    yield


def setup(app: web.Application) -> None:
    app[JINJA] = environment()
    settings = app[SETTINGS]
    if settings.oidc_issuer:
        app[oidc.OIDC] = oidc.OidcClient(settings)
    static = resources.files("flareport_api.ui") / "static"
    table = [
        ("GET", "/", _to_ui, "root"),
        ("GET", "/ui", _to_ui, "bare"),
        ("GET", "/ui/login", login.show_login, "login"),
        ("POST", "/ui/login", login.do_login, "login-post"),
        ("POST", "/ui/logout", login.do_logout, "logout"),
        ("GET", "/ui/login/oidc", oidc.begin, "oidc"),
        ("GET", "/ui/login/oidc/callback", oidc.callback, "oidc-callback"),
        ("GET", "/ui/", pages.dashboard, "dashboard"),
        ("GET", "/ui/agents", pages.agents_page, "agents"),
        ("GET", "/ui/agents/{agent_id}", pages.agent_page, "agent"),
        ("POST", "/ui/agents/{agent_id}/enroll", actions.enroll, "agent-enroll"),
        ("POST", "/ui/agents/{agent_id}/rename", actions.rename, "agent-rename"),
        ("POST", "/ui/agents/{agent_id}/policy", actions.policy, "agent-policy"),
        ("POST", "/ui/agents/{agent_id}/decommission", actions.decommission, "agent-decommission"),
        ("POST", "/ui/agents/{agent_id}/remove", actions.remove, "agent-remove"),
        ("GET", "/ui/keys", pages.keys_page, "keys"),
        ("POST", "/ui/keys", actions.create_key, "key-create"),
        ("POST", "/ui/keys/revoke", actions.revoke_key, "key-revoke"),
        ("POST", "/ui/keys/roll", actions.roll_key, "key-roll"),
        ("GET", "/ui/manual-rules", pages.manual_rules_page, "manual-rules"),
        ("POST", "/ui/manual-rules", actions.create_manual, "manual-rule-create"),
        ("POST", "/ui/manual-rules/delete", actions.delete_manual, "manual-rule-delete"),
        ("GET", "/ui/access-groups", pages.access_groups_page, "access-groups"),
        ("POST", "/ui/access-groups", actions.create_group, "access-group-create"),
        ("POST", "/ui/access-groups/delete", actions.delete_group, "access-group-delete"),
        ("GET", "/ui/tunnels", tunnels.tunnels_page, "tunnels"),
        ("POST", "/ui/tunnels/refresh", tunnels.refresh, "tunnels-refresh"),
        ("POST", "/ui/tunnels/restart", tunnels.restart, "tunnel-restart"),
        ("POST", "/ui/tunnels/redeploy", tunnels.redeploy, "tunnel-redeploy"),
        ("GET", "/ui/dead-letters", pages.dead_letters_page, "dead-letters"),
        ("POST", "/ui/dead-letters/replay", actions.replay, "dead-letter-replay"),
        ("POST", "/ui/reconcile", actions.reconcile, "reconcile"),
        ("POST", "/ui/rules/force-delete", ruleactions.force_delete, "rule-force-delete"),
        ("GET", "/ui/rules/override", ruleoverride.override_page, "rule-override"),
        ("POST", "/ui/rules/override", ruleoverride.save_override, "rule-override-save"),
        ("POST", "/ui/rules/revert", ruleoverride.revert_override, "rule-revert"),
        ("GET", "/ui/backup", backups.backup_page, "backup"),
        ("GET", "/ui/backup/download", backups.download, "backup-download"),
        ("POST", "/ui/backup/restore", backups.restore, "backup-restore"),
        ("GET", "/ui/settings", login.settings_page, "settings"),
        ("POST", "/ui/settings/master-key", login.reveal_master_key, "settings-master-key"),
        ("GET", "/ui/events", live.events, "events"),
    ]
    for method, path, handler, name in table:
        app.router.add_route(method, path, handler, name=ROUTE_PREFIX + name)
    app.router.add_static("/ui/static", str(static), name=ROUTE_PREFIX + "static")
    app.cleanup_ctx.append(_ui_ctx)
    app.cleanup_ctx.append(live.watcher_ctx)
    app.on_shutdown.append(live.close_streams)
