"""Admin routes that settle who may publish a hostname.

"First claim wins" decides between agents by itself; when it decides wrongly (the rightful host came second, or a
host was moved), an admin assigns the hostname to one owner: an agent (its tunnel) or an explicit tunnel. Every
other claim is then denied with the assignment named, whatever its claim time. Lifting the assignment returns the
hostname to first claim wins. Like every change, it goes out as an intent; the reconciler applies it.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from flareport_api import validation
from flareport_api.errors import invalid, json_response, read_body
from flareport_api.schemas import Accepted
from flareport_api.state import Route, context
from flareport_api.usecases import intents
from flareport_common.messages.intents import HostnameAssigned


class AssignHostname(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exactly one of ``agent_id`` (served through that agent's tunnel) or ``tunnel_id``."""

    agent_id: str | None = None
    tunnel_id: str | None = None


def _hostname(request: web.Request) -> str:
    return validation.hostname(request.match_info["hostname"], "hostname")


async def assign(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    hostname = _hostname(request)
    body = await read_body(request, AssignHostname)
    if (body.agent_id is None) == (body.tunnel_id is None):
        raise invalid("agent_id", "give exactly one of agent_id or tunnel_id")
    if body.agent_id is not None:
        owner = f"agent:{validation.path_id(body.agent_id, 'agent_id')}"
    else:
        owner = f"tunnel:{validation.path_id(body.tunnel_id or '', 'tunnel_id')}"
    return json_response(await intents.send(ctx, HostnameAssigned(hostname=hostname, owner=owner)), status=202)


async def unassign(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    await ctx.auth.admin(request)
    intent = HostnameAssigned(hostname=_hostname(request), owner=None)
    return json_response(await intents.send(ctx, intent), status=202)


ROUTES = [
    Route("PUT", "/api/v1/hostnames/{hostname}/owner", assign,
          "Assign a hostname to one agent or tunnel (every other claim of it is denied)", "rules", "admin",
          AssignHostname, Accepted, status=202, errors=(401, 422)),
    Route("DELETE", "/api/v1/hostnames/{hostname}/owner", unassign,
          "Lift a hostname's assignment (first claim wins again)", "rules", "admin", None, Accepted, status=202,
          errors=(401, 422)),
]  # fmt: skip
