"""Optional OpenID Connect single sign-on for the web UI: authorization code flow with PKCE, state and nonce.

``/ui/login/oidc`` stores a one-time state (nonce, PKCE verifier, the page to return to, and the SHA-256 of a
random value it also sets as a ten-minute HttpOnly cookie in the browser) in Redis for ten minutes and sends the
browser to the provider; ``/ui/login/oidc/callback`` refuses a browser without that cookie, takes the state back
exactly once (GETDEL, so a replayed callback fails) and refuses it unless the cookie matches: a callback URL made by
someone else's sign-in (login CSRF, to log a victim into the attacker's account) fails in any other browser. It
then exchanges the code at the token endpoint (client secret + PKCE verifier) and verifies the ID token with the
provider's published keys (signature, issuer, audience, expiry, nonce, and ``azp`` per OIDC Core 3.1.3.7). Only an
email on the allow-lists (``FLAREPORT_OIDC_ALLOWED_EMAILS`` / ``_DOMAINS``) with ``email_verified`` true gets a
session; the settings loader refuses OIDC without an allow-list, since otherwise every account at the provider
would be the admin, and without ``FLAREPORT_OIDC_REDIRECT_URL``, which is never derived from the request's Host.

HTTP goes through aiohttp (the API's own client library); authlib provides the PKCE challenge and its JOSE
library, joserfc, the JWT verification. Discovery and keys are cached; unknown key ids refresh the keys once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp
import structlog
from aiohttp import web

if TYPE_CHECKING:  # joserfc and authlib are imported when OIDC is used: most APIs never pay their import
    from joserfc.jwk import KeySet

from flareport_api.state import context
from flareport_api.ui.guards import UI
from flareport_api.ui.sessions import SESSION_COOKIE
from flareport_common.errors import SettingsError
from flareport_common.settings import ApiSettings

log = structlog.get_logger("flareport.api.ui")
STATE_TTL_S = 600
BINDING_COOKIE = "fp_oidc_binding"  # ties a pending sign-in to the browser that started it
BINDING_PATH = "/ui/login/oidc"
CACHE_S = 3600.0
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class OidcError(Exception):
    """The sign-in did not go through; the message is safe to show."""


def allowed(settings: ApiSettings, email: str) -> bool:
    email = email.strip().lower()
    return email in settings.oidc_allowed_emails or email.rpartition("@")[2] in settings.oidc_allowed_domains


def _binding_digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class OidcClient:
    def __init__(self, settings: ApiSettings) -> None:
        assert settings.oidc_issuer and settings.oidc_client_id
        if not settings.oidc_redirect_url:
            raise SettingsError("FLAREPORT_OIDC_REDIRECT_URL: required with OIDC")
        self._settings = settings
        self._redirect_uri = settings.oidc_redirect_url
        self._issuer = settings.oidc_issuer
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None

    async def _get_json(self, url: str, **kwargs: Any) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as http, http.get(url, **kwargs) as response:
            if response.status != 200:
                raise OidcError(f"the identity provider answered {response.status} for {url}")
            body: dict[str, Any] = await response.json(content_type=None)
            return body

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._metadata[0] > CACHE_S:
            found = await self._get_json(self._issuer + "/.well-known/openid-configuration")
            if found.get("issuer", "").rstrip("/") != self._issuer:
                raise OidcError("the provider's discovery document names another issuer")
            self._metadata = (time.monotonic(), found)
        return self._metadata[1]

    async def key_set(self, *, refresh: bool = False) -> KeySet:
        from joserfc.jwk import KeySet

        if refresh or self._keys is None or time.monotonic() - self._keys[0] > CACHE_S:
            raw = await self._get_json((await self.metadata())["jwks_uri"])
            self._keys = (time.monotonic(), KeySet.import_key_set(raw))  # type: ignore[arg-type]
        return self._keys[1]

    async def start(self, request: web.Request, next_page: str) -> tuple[str, str]:
        """The provider's authorization URL for a new one-time state, and the browser binding to set as a cookie."""
        from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

        ctx = context(request)
        state, nonce, verifier, binding = (secrets.token_urlsafe(32) for _ in range(4))
        record = json.dumps(
            {"nonce": nonce, "verifier": verifier, "next": next_page, "binding": _binding_digest(binding)}
        )
        await ctx.redis.set(ctx.keys.ui_oidc_state(state), record, ex=STATE_TTL_S)
        query = {
            "response_type": "code",
            "client_id": self._settings.oidc_client_id,
            "redirect_uri": self._redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        return str((await self.metadata())["authorization_endpoint"]) + "?" + urlencode(query), binding

    async def finish(self, request: web.Request) -> tuple[str, str]:
        """The verified, allowed email of the person who signed in, and the page to go to."""
        ctx = context(request)
        if "error" in request.query:
            raise OidcError(f"the identity provider refused: {request.query.get('error')}")
        binding = request.cookies.get(BINDING_COOKIE, "")
        if not binding:
            raise OidcError(
                "this browser did not start this sign-in (its sign-in cookie is missing or expired); "
                "start again from the login page"
            )
        state, code = request.query.get("state", ""), request.query.get("code", "")
        raw = await ctx.redis.getdel(ctx.keys.ui_oidc_state(state[:100])) if state and code else None
        if raw is None:
            raise OidcError("this sign-in link expired or was already used; start again")
        record = json.loads(raw)
        if not hmac.compare_digest(str(record.get("binding", "")), _binding_digest(binding)):
            log.warning("ui.oidc_foreign_callback")
            raise OidcError(
                "this sign-in was started in another browser (its sign-in cookie does not match); "
                "start again from the login page"
            )
        token = await self._exchange(code, record["verifier"])
        claims = await self._verify(token, record["nonce"])
        email = str(claims.get("email") or "").lower()
        verified = claims.get("email_verified")
        # Present and true (some providers send the string "true"); missing is not verified.
        if not email or not (verified is True or verified == "true"):
            raise OidcError("the identity provider did not give a verified email address")
        if not allowed(self._settings, email):
            log.warning("ui.oidc_refused", email=email)
            raise OidcError(f"{email} is not allowed to administer Flareport")
        return email, str(record["next"])

    async def _exchange(self, code: str, verifier: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._redirect_uri,
            "code_verifier": verifier,
        }
        # client_secret_basic (RFC 6749 2.3.1): both parts form-urlencoded, then base64.
        client_id, secret = self._settings.oidc_client_id or "", self._settings.oidc_client_secret or ""
        pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
        headers = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        url = (await self.metadata())["token_endpoint"]
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as http,
            http.post(url, data=form, headers=headers) as response,
        ):
            body: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200 or not isinstance(body.get("id_token"), str):
            raise OidcError(f"the token exchange failed ({response.status}: {body.get('error', 'no id_token')})")
        return str(body["id_token"])

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwt import JWTClaimsRegistry

        try:
            try:
                decoded = jwt.decode(id_token, await self.key_set(), algorithms=["RS256", "ES256", "PS256", "EdDSA"])
            except (JoseError, ValueError):
                decoded = jwt.decode(id_token, await self.key_set(refresh=True), algorithms=["RS256", "ES256"])
            JWTClaimsRegistry(
                iss={"essential": True, "value": self._issuer},
                aud={"essential": True, "value": self._settings.oidc_client_id or ""},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token did not verify: {exc}") from exc
        claims = dict(decoded.claims)
        # OIDC Core 3.1.3.7: with several audiences, azp must name us; whenever azp is there, it must be us.
        audiences = claims.get("aud")
        several = isinstance(audiences, list) and len(audiences) > 1
        if (several or "azp" in claims) and claims.get("azp") != self._settings.oidc_client_id:
            raise OidcError("the ID token did not verify: it was issued to another client (azp)")
        return claims


OIDC = web.AppKey("ui_oidc", OidcClient)


async def begin(request: web.Request) -> web.StreamResponse:
    if OIDC not in request.app:
        raise web.HTTPNotFound(text="single sign-on is not configured")
    target = request.query.get("next", "/ui/")
    target = target if target.startswith("/ui") and not target.startswith("//") else "/ui/"
    try:
        url, binding = await request.app[OIDC].start(request, target)
    except (OidcError, aiohttp.ClientError, TimeoutError, KeyError) as exc:
        log.warning("ui.oidc_unavailable", error=str(exc))
        return web.Response(status=502, text=f"The identity provider is not reachable: {exc}")
    response = web.HTTPFound(url)
    _binding_cookie(request, response, binding, STATE_TTL_S)
    raise response


def _binding_cookie(request: web.Request, response: web.StreamResponse, value: str, max_age: int) -> None:
    # SameSite=Lax: sent on the provider's top-level redirect back to the callback, not on cross-site subrequests.
    response.set_cookie(
        BINDING_COOKIE,
        value,
        httponly=True,
        samesite="Lax",
        secure=request.app[UI].sessions.secure(request),
        path=BINDING_PATH,
        max_age=max_age,
    )


async def callback(request: web.Request) -> web.StreamResponse:
    if OIDC not in request.app:
        raise web.HTTPNotFound(text="single sign-on is not configured")
    ui = request.app[UI]
    try:
        email, target = await request.app[OIDC].finish(request)
    except (OidcError, aiohttp.ClientError, TimeoutError, KeyError) as exc:
        refused = web.Response(status=403, text=f"Sign-in failed: {exc}\n\nStart again at /ui/login")
        refused.del_cookie(BINDING_COOKIE, path=BINDING_PATH)
        return refused
    token, _ = await ui.sessions.create(email, via="oidc")
    response = web.HTTPFound(target)
    ui.sessions.set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(BINDING_COOKIE, path=BINDING_PATH)
    raise response
