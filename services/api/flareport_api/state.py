"""Typed application state (``web.AppKey``) and the route table shared by the router and the OpenAPI document.

Every route is declared once as a ``Route`` (method, path, handler, who may call it, body and response
schemas, query parameters, the error statuses it documents); ``app.py`` registers the table and
``openapi.py`` describes the very same table, so the document cannot list a route the server lacks or miss
one it has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from aiohttp import web

from flareport_api.auth import Authenticator
from flareport_api.keystore import KeyStore
from flareport_api.longpoll import CommandHub
from flareport_common.keys import Keys
from flareport_common.settings import ApiSettings
from flareport_common.streams import Producer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AuthKind = Literal["admin", "agent", "none"]


@dataclass(frozen=True, slots=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: AuthKind
    body: Any = None
    response: Any = None
    status: int = 200
    query: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"


@dataclass(slots=True)
class ApiContext:
    settings: ApiSettings
    keys: Keys
    redis: aioredis.Redis
    store: KeyStore
    auth: Authenticator
    hub: CommandHub
    producer: Producer
    scripts: dict[str, Any] = field(default_factory=dict)


SETTINGS = web.AppKey("settings", ApiSettings)
CONTEXT = web.AppKey("context", ApiContext)
ROUTES = web.AppKey("routes", list[Route])


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
