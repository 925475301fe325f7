"""API tokens: ``GET /user/tokens/verify``, ``GET /accounts/{account_id}/tokens/verify`` and token permissions.

By default every token the authentication step accepts is an active, user-owned token with every permission, so
clients that never register a token see no difference. A test registers a token (``POST /__emulator/tokens``) to
give it what Cloudflare would attach to it:

* ``status`` (``active``, ``disabled``, ``expired``), ``expires_on`` and ``not_before`` (ISO 8601). A token whose
  ``expires_on`` has passed is ``expired``; one before its ``not_before`` is not active either;
* ``owner``: ``user`` (verified at ``/user/tokens/verify``) or ``account`` (an account API token, verified at
  ``/accounts/{account_id}/tokens/verify`` of its ``account_id`` only; ``/user/tokens/verify`` answers it 401, as
  Cloudflare does for account-owned tokens);
* ``permissions``: Cloudflare's permission names as the dashboard shows them (``"Zone > DNS > Edit"``); ``null``
  (the default) grants every permission. Edit implies Read.

A request whose endpoint needs a permission the token lacks is refused with 403, code 10000 "Authentication error"
(Cloudflare's answer to a token without the permission; 9109 is also seen), after authentication, the rate limit and
the faults. A token that is not active is refused on every endpoint but the verify ones with 401, code 1000
"Invalid API Token". Both are documented in docs/cloudflare-emulator.md as assumptions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from flareport_cfemu.envelope import API_PREFIX
from flareport_cfemu.errors import AUTH_ERROR, ApiError
from flareport_cfemu.state import new_hex_id

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INVALID_TOKEN = 1000  # "Invalid API Token": Cloudflare's answer to a token it does not accept at this endpoint
STATUSES = ("active", "disabled", "expired")
OWNERS = ("user", "account")
USER_VERIFY = "/user/tokens/verify"
ACCOUNT_VERIFY = "/accounts/{account_id}/tokens/verify"
VERIFY_TEMPLATES = frozenset({USER_VERIFY, ACCOUNT_VERIFY})

# Endpoint template prefix -> the permission group it needs (read with GET, edit otherwise); first match wins.
PERMISSION_GROUPS = (
    ("/zones/{zone_id}/dns_records", "Zone > DNS"),
    ("/zones", "Zone > Zone"),
    ("/accounts/{account_id}/cfd_tunnel", "Account > Cloudflare Tunnel"),
    ("/accounts/{account_id}/members", "Account > Account Settings"),
    (
        "/accounts/{account_id}/access/identity_providers",
        "Account > Access: Organizations, Identity Providers, and Groups",
    ),
    ("/accounts/{account_id}/access", "Account > Access: Apps and Policies"),
)


def required_permission(method: str, template: str) -> str | None:
    """The permission (``"Zone > DNS > Read"``) an endpoint needs, or ``None`` when it needs none."""
    if template in VERIFY_TEMPLATES:
        return None
    for prefix, group in PERMISSION_GROUPS:
        if template == prefix or template.startswith(prefix + "/"):
            return f"{group} > {'Read' if method in ('GET', 'HEAD') else 'Edit'}"
    return None


def _time(data: Json, name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 time")
    dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass
class TokenPolicy:
    """What Cloudflare attaches to one token."""

    id: str = field(default_factory=new_hex_id)
    status: str = "active"
    expires_on: str | None = None
    not_before: str | None = None
    owner: str = "user"
    account_id: str | None = None
    permissions: frozenset[str] | None = None

    @classmethod
    def from_json(cls, data: Json) -> TokenPolicy:
        allowed = {"token", "id", "status", "expires_on", "not_before", "owner", "account_id", "permissions"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown token fields: {', '.join(sorted(unknown))}")
        status = data.get("status", "active")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        owner = data.get("owner", "user")
        if owner not in OWNERS:
            raise ValueError("owner must be 'user' or 'account'")
        account_id = data.get("account_id")
        if owner == "account" and not isinstance(account_id, str):
            raise ValueError("an account-owned token needs account_id")
        raw = data.get("permissions")
        permissions: frozenset[str] | None = None
        if raw is not None:
            if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
                raise ValueError("permissions must be a list of permission names or null")
            permissions = frozenset(raw)
        return cls(
            id=str(data.get("id") or new_hex_id()),
            status=status,
            expires_on=_time(data, "expires_on"),
            not_before=_time(data, "not_before"),
            owner=owner,
            account_id=account_id if isinstance(account_id, str) else None,
            permissions=permissions,
        )

    def current_status(self, now: dt.datetime | None = None) -> str:
        moment = now or dt.datetime.now(dt.UTC)
        if self.status == "active" and self.expires_on and _parse_time(self.expires_on) <= moment:
            return "expired"
        return self.status

    def usable(self, now: dt.datetime | None = None) -> bool:
        moment = now or dt.datetime.now(dt.UTC)
        if self.not_before and _parse_time(self.not_before) > moment:
            return False
        return self.current_status(moment) == "active"

    def grants(self, permission: str) -> bool:
        if self.permissions is None:
            return True
        if permission in self.permissions:
            return True
        group, _, level = permission.rpartition(" > ")
        return level == "Read" and f"{group} > Edit" in self.permissions

    def verify_result(self) -> Json:
        result: Json = {"id": self.id, "status": self.current_status()}
        if self.expires_on:
            result["expires_on"] = self.expires_on
        if self.not_before:
            result["not_before"] = self.not_before
        return result

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "status": self.current_status(),
            "expires_on": self.expires_on,
            "not_before": self.not_before,
            "owner": self.owner,
            "account_id": self.account_id,
            "permissions": sorted(self.permissions) if self.permissions is not None else None,
        }


class TokenRegistry:
    """The tokens tests registered; any other accepted token is an active user token with every permission."""

    # Unregistered tokens whose default policy is kept: a client uses one or a few tokens, and a flood of distinct
    # ones (a test of the rate limit per token) must not grow memory without bound.
    DEFAULTS_KEPT = 1024

    def __init__(self) -> None:
        self.tokens: dict[str, TokenPolicy] = {}
        # An unregistered token's policy, built (a sha256) once rather than on every request it makes.
        self._defaults: dict[str, TokenPolicy] = {}

    def policy(self, token: str) -> TokenPolicy:
        registered = self.tokens.get(token)
        if registered is not None:
            return registered
        default = self._defaults.get(token)
        if default is None:
            if len(self._defaults) >= self.DEFAULTS_KEPT:
                self._defaults.clear()
            default = self._defaults[token] = TokenPolicy(id=_stable_id(token))
        return default

    def register(self, data: Json) -> TokenPolicy:
        token = data.get("token")
        if not isinstance(token, str) or not token.strip():
            raise ValueError("token must be a non-empty string")
        policy = TokenPolicy.from_json(data)
        self.tokens[token.strip()] = policy
        return policy

    def clear(self) -> None:
        self.tokens.clear()
        self._defaults.clear()


TOKENS = web.AppKey("tokens", TokenRegistry)


def _stable_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").partition(" ")[2].strip()


def _endpoint(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return None if resource is None else resource.canonical.removeprefix(API_PREFIX)


@web.middleware
async def token_scope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs inside the API pipeline (after authentication, rate limit and faults): the token's status and scope."""
    template = _endpoint(request)
    if template is None or not request.path.startswith(API_PREFIX + "/") or template in VERIFY_TEMPLATES:
        return await handler(request)
    policy = request.app[TOKENS].policy(_bearer(request))
    if not policy.usable():
        raise ApiError(401, INVALID_TOKEN, "Invalid API Token")
    permission = required_permission(request.method, template)
    if permission is not None and not policy.grants(permission):
        raise ApiError(403, AUTH_ERROR, "Authentication error")
    return await handler(request)


routes = web.RouteTableDef()


def _verified(policy: TokenPolicy) -> web.Response:
    body = {
        "success": True,
        "errors": [],
        "messages": [{"code": 10000, "message": "This API Token is valid and active", "type": None}],
        "result": policy.verify_result(),
    }
    return web.json_response(body)


@routes.get(API_PREFIX + USER_VERIFY)
async def verify_user_token(request: web.Request) -> web.Response:
    policy = request.app[TOKENS].policy(_bearer(request))
    if policy.owner != "user":
        raise ApiError(401, INVALID_TOKEN, "Invalid API Token")
    return _verified(policy)


@routes.get(API_PREFIX + ACCOUNT_VERIFY)
async def verify_account_token(request: web.Request) -> web.Response:
    policy = request.app[TOKENS].policy(_bearer(request))
    if policy.owner != "account" or policy.account_id != request.match_info["account_id"]:
        raise ApiError(401, INVALID_TOKEN, "Invalid API Token")
    return _verified(policy)


# --- controls -------------------------------------------------------------------------------------------------------


def _control_ok(result: Any) -> web.Response:
    return web.json_response({"success": True, "result": result})


@routes.get("/__emulator/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    return _control_ok([p.to_json() for p in request.app[TOKENS].tokens.values()])


@routes.post("/__emulator/tokens")
async def register_tokens(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        items = body if isinstance(body, list) else [body]
        registry = request.app[TOKENS]
        return _control_ok([registry.register(item).to_json() for item in items])
    except (ValueError, TypeError, AttributeError) as error:
        return web.json_response({"success": False, "errors": [{"code": 0, "message": str(error)}]}, status=400)


@routes.delete("/__emulator/tokens")
async def clear_tokens(request: web.Request) -> web.Response:
    request.app[TOKENS].clear()
    return _control_ok({"cleared": True})
