"""Who is using the web UI: the admin's password (argon2), sessions in Redis, CSRF tokens and a login brake.

* Password: ``FLAREPORT_ADMIN_PASSWORD_HASH`` wins, else ``FLAREPORT_ADMIN_PASSWORD`` (hashed at start, never
  stored), else a hash kept in Redis. With none of them, the first API process to start generates a password,
  stores its hash with SET NX (so two replicas starting together agree on one) and prints the password once in
  its log; later starts reuse the stored hash and print nothing.
* Sessions: the cookie holds 256 random bits; Redis holds only their SHA-256 (a Redis dump does not hand out
  logins), with the user, a per-session CSRF token and a sliding TTL. Sessions therefore survive API restarts
  and work across replicas. The cookie is HttpOnly and SameSite=Lax, and Secure when the request came over https.
* CSRF: every form carries the session's token (``csrf`` field), compared in constant time. The login form has no
  session yet, so it uses a double-submit cookie instead.
* Login brake: failed logins are counted per client address in Redis (INCR + EXPIRE on the window), shared by all
  replicas; past the limit the form answers 429 before the password is even checked, so guessing costs time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from flareport_api.auth import count_failure
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.settings import ApiSettings

log = structlog.get_logger("flareport.api.ui")
SESSION_COOKIE = "fp_session"
LOGIN_CSRF_COOKIE = "fp_login_csrf"
_hasher = PasswordHasher()


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


async def admin_password_hash(settings: ApiSettings, redis: aioredis.Redis, keys: Keys) -> str:
    """The hash to check the admin's password against (see the module docstring for the order)."""
    if settings.admin_password_hash is not None:
        return settings.admin_password_hash
    if settings.admin_password is not None:
        return await asyncio.to_thread(_hasher.hash, settings.admin_password)
    generated = secrets.token_urlsafe(18)
    hashed = await asyncio.to_thread(_hasher.hash, generated)
    if await redis.set(keys.ui_admin_password_hash, hashed, nx=True):
        # Printed exactly once, by the process that stored it: the operator's only chance to read it.
        log.warning(
            "ui.admin_password_generated",
            user=settings.admin_user,
            password=generated,
            hint="log in to the web UI with this password; set FLAREPORT_ADMIN_PASSWORD_HASH to choose your own",
        )
        return hashed
    return _text(await redis.get(keys.ui_admin_password_hash)) or hashed


async def verify_password(hashed: str, password: str) -> bool:
    """Constant work whatever the outcome; argon2 runs in a thread so the event loop keeps serving agents."""

    def check() -> bool:
        try:
            return bool(_hasher.verify(hashed, password))
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    user: str
    csrf: str
    via: str = "password"  # or "oidc"
    created_at: datetime | None = None


class Sessions:
    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: ApiSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._ttl = max(1, int(settings.ui_session_hours * 3600))

    async def create(self, user: str, *, via: str = "password") -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        session = Session(token_hash=_digest(token), user=user, csrf=secrets.token_urlsafe(32), via=via, created_at=now)
        key = self._keys.ui_session(session.token_hash)
        fields = {"user": user, "csrf": session.csrf, "created_at": now.isoformat(), "via": via}
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, self._ttl)
        await pipe.execute()
        return token, session

    async def load(self, request: web.Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 200:
            return None
        token_hash = _digest(token)
        key = self._keys.ui_session(token_hash)
        raw = await self._redis.hgetall(key)
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        user, csrf, via = fields.get("user"), fields.get("csrf"), fields.get("via") or "password"
        if not user or not csrf or not self._still_allowed(user, via):
            return None  # a renamed admin, or an email taken off the allow-list, loses its sessions at once
        await self._redis.expire(key, self._ttl)  # sliding expiry: an active admin stays logged in
        created = datetime.fromisoformat(fields.get("created_at") or utcnow().isoformat())
        return Session(token_hash=token_hash, user=user, csrf=csrf, via=via, created_at=created)

    def _still_allowed(self, user: str, via: str) -> bool:
        settings = self._settings
        if via == "oidc":
            email, domain = user.lower(), user.lower().rpartition("@")[2]
            return bool(settings.oidc_issuer) and (
                email in settings.oidc_allowed_emails or domain in settings.oidc_allowed_domains
            )
        return settings.ui_password_login and user == settings.admin_user

    async def delete(self, session: Session) -> None:
        await self._redis.delete(self._keys.ui_session(session.token_hash))

    async def set_flash(self, session: Session, message: str) -> None:
        await self._redis.hset(self._keys.ui_session(session.token_hash), "flash", message)

    async def pop_flash(self, session: Session) -> str | None:
        key = self._keys.ui_session(session.token_hash)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hget(key, "flash")
        pipe.hdel(key, "flash")
        flash, _ = await pipe.execute()
        return _text(flash)

    def secure(self, request: web.Request) -> bool:
        mode = self._settings.ui_secure_cookie
        if mode != "auto":
            return mode == "always"
        return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"

    def set_cookie(self, request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(
            name, value, httponly=True, samesite="Lax", secure=self.secure(request), path="/", max_age=self._ttl
        )


class LoginBrake:
    """Failed logins per client address, in Redis so every replica counts the same attempts."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, limit: int, window_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self._limit = limit
        self._window = max(1, int(window_s))

    async def retry_after(self, address: str) -> int | None:
        key = self._keys.ui_login_failures(address)
        count = _text(await self._redis.get(key))
        if count is None or int(count) < self._limit:
            return None
        return max(1, int(await self._redis.ttl(key)))

    async def failed(self, address: str) -> None:
        await count_failure(self._redis, self._keys.ui_login_failures(address), self._window)

    async def succeeded(self, address: str) -> None:
        await self._redis.delete(self._keys.ui_login_failures(address))
