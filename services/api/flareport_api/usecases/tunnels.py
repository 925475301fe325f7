"""The account's tunnels (the dns-worker's read model) for the admin API, the CLI and the web UI, and the actions on
them: restart or redeploy an agent's cloudflared, list the tunnels again now.

The read model holds Cloudflare's view only; which agent runs a tunnel (``Keys.tunnel_agents``) and whether
Flareport created it (``Keys.cf_created_tunnels``) are joined in here, at read time. ``actions_for`` (pure) decides
what may be done with a tunnel: nothing with one no agent runs (a tunnel Flareport did not create and no agent was
enrolled on is someone else's, and Flareport leaves it as it is) or whose agent is being decommissioned. A tunnel an
agent was enrolled on by id (adopted, e.g. DockFlare's) gets the actions: they replace only that agent's own
cloudflared container and touch nothing in Cloudflare; other connectors serving the tunnel keep running. The API
refuses what the page does not offer, with the same reason. The actions go out as intents; the reconciler sends the
agent a ``restart_tunnel`` command, or the dns-worker a ``refresh_tunnels`` job. A restart or redeploy is recorded
in the admin audit list with who asked, in the transaction of its intent (``usecases.audit``): it interrupts the
tunnel's traffic for a moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import msgspec

from flareport_api import readstore
from flareport_api.apierror import ApiError, invalid, not_found
from flareport_api.schemas import Accepted, AuditEntry
from flareport_api.state import ApiContext
from flareport_api.tunnelschemas import TunnelAction, TunnelConnectorView, TunnelDetail, TunnelList, TunnelView
from flareport_api.usecases import audit, intents
from flareport_common import imagerefs, tunnelview
from flareport_common.env import validate_image
from flareport_common.errors import SettingsError
from flareport_common.messages.base import utcnow
from flareport_common.messages.intents import TunnelRestartRequested, TunnelsRefreshRequested
from flareport_common.readmodel import AgentRecord
from flareport_common.replies import text
from flareport_common.tunnelview import TunnelInfo, TunnelsDocument

# Agents whose cloudflared a restart may replace: an offline one gets the command when it is back.
RUNNING_STATUSES = ("pending", "active", "offline")
# The cloudflared state an agent in external-cloudflared mode reports (flareport_agent.external): it runs none.
EXTERNAL = "external"
BOTH: tuple[TunnelAction, ...] = ("restart", "redeploy")


def actions_for(created: bool, agent: AgentRecord | None) -> tuple[tuple[TunnelAction, ...], str | None]:
    """What an admin may do with a tunnel, and why not when nothing."""
    if agent is None:
        if not created:
            return (), "not created by Flareport: left as it is (no restart or redeploy)"
        return (), "no agent runs this tunnel"
    # An agent runs it (a tunnel it created, or one adopted at enrolment, e.g. DockFlare's): a restart or redeploy
    # replaces only that agent's own cloudflared container; the tunnel in Cloudflare is not touched.
    if agent.status not in RUNNING_STATUSES:
        return (), f"its agent {agent.display_name} is {agent.status}"
    if agent.tunnel.container_state == EXTERNAL:
        return (
            (),
            f"its agent {agent.display_name} runs no cloudflared (external cloudflared): restart it where it runs",
        )
    return BOTH, None


def join(info: TunnelInfo, *, created: bool, agent_id: str | None, agents: Mapping[str, AgentRecord]) -> TunnelView:
    agent = agents.get(agent_id) if agent_id else None
    actions, note = actions_for(created, agent)
    return TunnelView(
        id=info.id,
        name=info.name,
        status=info.status,
        created_at=info.created_at,
        conns_active_at=info.conns_active_at,
        conns_inactive_at=info.conns_inactive_at,
        remote_config=info.remote_config,
        connectors=tuple(msgspec.convert(msgspec.structs.asdict(c), TunnelConnectorView) for c in info.connectors),
        created_by_flareport=created,
        agent_id=agent_id,
        agent_name=agent.display_name if agent else None,
        agent_image=(agent.tunnel.image or None) if agent else None,
        actions=actions,
        actions_note=note,
    )


def _age(checked_at: datetime | None) -> float | None:
    return None if checked_at is None else round(max(0.0, (utcnow() - checked_at).total_seconds()), 1)


async def _read(ctx: ApiContext) -> tuple[TunnelsDocument, dict[str, str], set[str]]:
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.get(ctx.keys.cf_tunnels)
    pipe.hgetall(ctx.keys.tunnel_agents)
    pipe.smembers(ctx.keys.cf_created_tunnels)
    raw, owners, created = await pipe.execute()
    return (
        tunnelview.decode(raw),
        {text(k): text(v) for k, v in owners.items()},
        {text(m) for m in created},
    )


async def listing(ctx: ApiContext) -> TunnelList:
    document, owners, created = await _read(ctx)
    agents = {a.agent_id: a for a in await readstore.agents(ctx.redis, ctx.keys)}
    return TunnelList(
        tunnels=tuple(
            join(t, created=t.id in created, agent_id=owners.get(t.id), agents=agents) for t in document.tunnels
        ),
        checked_at=document.checked_at,
        age_seconds=_age(document.checked_at),
        error=document.error,
        failed_at=document.failed_at,
    )


async def detail(ctx: ApiContext, tunnel_id: str) -> TunnelDetail:
    """One tunnel of the last listing; a tunnel an agent runs that the listing does not have yet (created since)
    is shown with what Flareport knows of it."""
    document, owners, created = await _read(ctx)
    info = next((t for t in document.tunnels if t.id == tunnel_id), None)
    agent_id = owners.get(tunnel_id)
    agent = await readstore.agent(ctx.redis, ctx.keys, agent_id) if agent_id else None
    if info is None:
        if agent is None:
            raise not_found("tunnel", tunnel_id)
        info = TunnelInfo(id=tunnel_id, name=agent.tunnel_name or "", status="unknown")
    agents = {agent.agent_id: agent} if agent is not None else {}
    return TunnelDetail(
        tunnel=join(info, created=tunnel_id in created, agent_id=agent_id, agents=agents),
        checked_at=document.checked_at,
        age_seconds=_age(document.checked_at),
        error=document.error,
    )


def redeploy_image(image: str | None, tunnel: TunnelView) -> str | None:
    """The image a redeploy names, checked: a valid reference naming the image the agent runs (it refuses others)."""
    if image is None:
        return None
    try:
        validate_image("image", image)
    except SettingsError as exc:
        raise invalid("image", str(exc)) from None
    if not tunnel.agent_image:
        raise ApiError(409, "image_unknown", "the agent has not reported which cloudflared image it runs yet")
    if not imagerefs.allowed(image, tunnel.agent_image):
        raise invalid(
            "image",
            f"the agent runs only its configured cloudflared image {tunnel.agent_image!r} (CLOUDFLARED_IMAGE on its "
            f"host; change it there and restart the agent), so it would refuse {image!r}",
        )
    return image


async def restart(ctx: ApiContext, tunnel_id: str, *, redeploy: bool, actor: str, image: str | None = None) -> Accepted:
    """Replace the agent's cloudflared (a redeploy may name the image, which must be the one it runs); ``actor`` is
    who asked, for the audit list."""
    tunnel = (await detail(ctx, tunnel_id)).tunnel
    action: TunnelAction = "redeploy" if redeploy else "restart"
    if action not in tunnel.actions or tunnel.agent_id is None:
        raise ApiError(409, "not_allowed", f"cannot {action} tunnel {tunnel_id}: {tunnel.actions_note}")
    checked = redeploy_image(image, tunnel) if redeploy else None
    intent = TunnelRestartRequested(agent_id=tunnel.agent_id, tunnel_id=tunnel_id, image=checked)
    target = f"tunnel:{tunnel_id}" + (f" image:{checked}" if checked else "")
    entry = AuditEntry(at=utcnow(), actor=actor, action=f"tunnel_{action}", target=target, intent_id=intent.id)
    return await audit.with_intent(ctx, entry, intent)


async def refresh(ctx: ApiContext) -> Accepted:
    return await intents.send(ctx, TunnelsRefreshRequested())
