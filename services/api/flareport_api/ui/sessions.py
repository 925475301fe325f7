"""Who is using the web UI: the admin's password (argon2), sessions in Redis, CSRF tokens and a login brake.

* Password: ``FLAREPORT_ADMIN_PASSWORD_HASH`` wins, else ``FLAREPORT_ADMIN_PASSWORD`` (hashed at start, never
  stored), else a hash kept in Redis. With none of them, the first API process to start generates a password,
  stores its hash with SET NX (so two replicas starting together agree on one) and writes the password to a file
  only its owner can read (``FLAREPORT_ADMIN_PASSWORD_FILE``); the log says where, never what. Later starts reuse
  the stored hash and write nothing.
* Sessions: the cookie holds 256 random bits; Redis holds only their SHA-256 (a Redis dump does not hand out
  logins), with the user, a per-session CSRF token, when it was created and what authorised it, under a sliding
  TTL that never reaches past the session's absolute end (``FLAREPORT_UI_SESSION_MAX_HOURS`` after sign-in).
  Sessions therefore survive API restarts and work across replicas, but not a change of what let them in: each
  carries an HMAC of the admin password (for a password login) or of the issuer, client id and allow-lists (for
  single sign-on), and is refused once the current configuration gives another one. The cookie is HttpOnly and
  SameSite=Lax, and Secure when the request came over https.
* CSRF: every form carries the session's token (``csrf`` field), compared in constant time. The login form has no
  session yet, so it uses a double-submit cookie instead.
* Login brake: every password check first reserves an attempt for its client address in Redis (one Lua script:
  refuse when the window's count is at the limit, else INCR + EXPIRE), shared by all replicas; past the limit the
  form answers 429 before the password is even checked, so however many guesses arrive at once, at most the limit
  are ever verified. A right password gives its reservation back; a wrong one stays counted until the window ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import secrets
import sys
from dataclasses import dataclass
from datetime import datetime

import redis.asyncio as aioredis
import structlog
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from flareport_api.clientaddr import is_https
from flareport_api.scripts import delete_if_same, release_login, reserve_login
from flareport_common.errors import SettingsError
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.replies import optional_text
from flareport_common.settings import ApiSettings, default_admin_password_file

log = structlog.get_logger("flareport.api.ui")
SESSION_COOKIE = "fp_session"
LOGIN_CSRF_COOKIE = "fp_login_csrf"
_hasher = PasswordHasher()


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
    stored = optional_text(await redis.get(keys.ui_admin_password_hash))
    if stored:
        return stored
    generated = secrets.token_urlsafe(18)
    hashed = await asyncio.to_thread(_hasher.hash, generated)
    if not await redis.set(keys.ui_admin_password_hash, hashed, nx=True):
        return optional_text(await redis.get(keys.ui_admin_password_hash)) or hashed
    # Only the process that stored the hash knows the password: it goes to a file only the owner can read, never
    # to the log (logs are shipped, kept and read by many), and to the terminal only when a person watches it.
    path = settings.admin_password_file or default_admin_password_file(os.environ)
    try:
        await asyncio.to_thread(write_secret_file, path, generated + "\n")
    except OSError as exc:
        await delete_if_same(redis, keys.ui_admin_password_hash, hashed)
        raise SettingsError(
            f"FLAREPORT_ADMIN_PASSWORD_FILE: cannot write the generated admin password to {path} ({exc}); "
            "choose a writable path, or set FLAREPORT_ADMIN_PASSWORD_HASH"
        ) from exc
    log.warning(
        "ui.admin_password_generated",
        user=settings.admin_user,
        file=path,
        hint="log in to the web UI with the password in this file; set FLAREPORT_ADMIN_PASSWORD_HASH to choose one",
    )
    if sys.stderr.isatty():
        print(f"flareport: web UI login: {settings.admin_user} / {generated} (also in {path})", file=sys.stderr)
    return hashed


def write_secret_file(path: str, content: str) -> None:
    """Write ``content`` to ``path`` readable by its owner only (0600), in a directory created 0700 if missing.

    The file is created new (O_CREAT | O_EXCL, never through a planted symlink) beside its final name, then
    renamed over it: a reader sees the old file or the whole new one, and never a moment with looser permissions.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


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


def authorities(settings: ApiSettings, password_hash: str) -> dict[str, str]:
    """What authorises a session, per way of signing in, as an HMAC under a key derived from the master key.

    A password session is bound to the admin's user name and password as configured: the argon2 hash when it is
    given (``FLAREPORT_ADMIN_PASSWORD_HASH``, or the generated one in Redis), else the password itself, since its
    hash is salted afresh by every process. A single sign-on session is bound to the issuer, client id and
    allow-lists. Changing any of them ends every session it authorised, on every replica; so does a new master
    key. Keyed, so the values stored in Redis reveal nothing about the password without the master key.
    """
    key = hmac.new(settings.master_api_key.encode(), b"flareport ui session authority", hashlib.sha256).digest()
    if settings.admin_password_hash is None and settings.admin_password is not None:
        secret = "password:" + settings.admin_password
    else:
        secret = "hash:" + password_hash
    parts = {
        "password": ("password", settings.admin_user, secret),
        "oidc": (
            "oidc",
            settings.oidc_issuer or "",
            settings.oidc_client_id or "",
            " ".join(sorted(settings.oidc_allowed_emails)),
            " ".join(sorted(settings.oidc_allowed_domains)),
        ),
    }
    return {
        via: hmac.new(key, "\0".join(values).encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        for via, values in parts.items()
    }


class Sessions:
    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: ApiSettings, password_hash: str) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._ttl = max(1, int(settings.ui_session_hours * 3600))
        self._lifetime = max(self._ttl, int(settings.ui_session_max_hours * 3600))
        self._authorities = authorities(settings, password_hash)

    async def create(self, user: str, *, via: str = "password") -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        session = Session(token_hash=_digest(token), user=user, csrf=secrets.token_urlsafe(32), via=via, created_at=now)
        key = self._keys.ui_session(session.token_hash)
        fields = {
            "user": user,
            "csrf": session.csrf,
            "created_at": now.isoformat(),
            "via": via,
            "authority": self._authorities[via],
        }
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, min(self._ttl, self._lifetime))
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
        fields = {optional_text(k): optional_text(v) for k, v in raw.items()}
        user, csrf, via = fields.get("user"), fields.get("csrf"), fields.get("via") or "password"
        if not user or not csrf or not self._still_allowed(user, via):
            return None  # a renamed admin, or an email taken off the allow-list, loses its sessions at once
        expected = self._authorities.get(via)
        if expected is None or not same(fields.get("authority") or "", expected):
            # A new admin password or allow-list: what let this session in no longer does. Deleted, so that it
            # stays over on a replica not restarted yet, and if the old password or list ever comes back.
            await self._redis.delete(key)
            return None
        try:
            created = datetime.fromisoformat(fields.get("created_at") or "")
        except ValueError:
            return None
        if created.tzinfo is None:
            return None
        remaining = self._lifetime - (utcnow() - created).total_seconds()
        if remaining <= 0:
            await self._redis.delete(key)  # past its absolute lifetime, however active
            return None
        # Sliding expiry (an active admin stays logged in), but never past the session's absolute end.
        await self._redis.expire(key, max(1, min(self._ttl, math.ceil(remaining))))
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
        return optional_text(flash)

    def secure(self, request: web.Request) -> bool:
        mode = self._settings.ui_secure_cookie
        if mode != "auto":
            return mode == "always"
        return is_https(request)  # X-Forwarded-Proto counts only from a trusted proxy

    def set_cookie(self, request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(
            name, value, httponly=True, samesite="Lax", secure=self.secure(request), path="/", max_age=self._ttl
        )


class LoginBrake:
    """Password checks per client address, in Redis so every replica counts the same attempts.

    ``reserve`` before verifying a password (``None``: go ahead; a number: refused, retry after that many
    seconds), ``release`` after a right one. A wrong password keeps its reservation: it is a failure of the window.
    Only the client's own counter is ever touched, so one client's login never clears another's failures.
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, limit: int, window_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self._limit = limit
        self._window = max(1, math.ceil(window_s))

    async def reserve(self, address: str) -> int | None:
        key = self._keys.ui_login_failures(address)
        retry = await reserve_login(self._redis, key, limit=self._limit, window_s=self._window)
        return retry or None

    async def release(self, address: str) -> None:
        await release_login(self._redis, self._keys.ui_login_failures(address))
