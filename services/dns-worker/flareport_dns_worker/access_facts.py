"""What the system group ``authenticated-default`` needs from the Cloudflare account, found and kept in Redis.

DockFlare's ``access.policy=authenticate`` lets in the Cloudflare account owner's email, logging in by One-time
PIN, and nobody else. The reconciler builds that policy (``flareport_common.access``) from two facts the
dns-worker — the only process that calls Cloudflare — finds at start and every ``CLOUDFLARE_ZONE_REFRESH_SECONDS``:

* ``owner_email``: ``FLAREPORT_ACCESS_OWNER_EMAIL`` when set (no call); else, as DockFlare does, from
  ``GET /accounts/{id}/members``: the first member (in the API's order) with a role named exactly
  ``Administrator``, or a role granting analytics read, or a role whose name contains ``owner`` (any case); else
  the first member. The token needs "Account Settings Read" for that list;
* ``otp_idp_id``: the id of the first identity provider of type ``onetimepin`` in
  ``GET /accounts/{id}/access/identity_providers`` (DockFlare never creates it; neither does Flareport).

They are stored in the hash ``Keys.access_facts`` (``owner_email``, ``otp_idp_id``, ``checked_at``). A fact
Cloudflare says is not there — no member, no One-time PIN provider, or a refusal such as a 403 for a token without
the permission — is **deleted**, never left as a stale guess: the reconciler then reports the rules that need it
instead of publishing them. A refusal is logged once (with the permission it lacks) until the answer changes. When
Cloudflare cannot be reached at all (5xx, timeouts after the client's retries), the stored value is kept and
checked again at the next refresh: an outage says nothing about the account.

When a stored value changes, ``ReconcileRequested(scope="all", verify=False)`` goes to the intents stream in the
same transaction as the change, so the reconciler re-plans every rule with the new facts. Replicas share the
hash: a periodic refresh is skipped when another replica checked less than an interval ago (at start, every
replica checks, so a changed setting counts at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog

from flareport_common.keys import Keys
from flareport_common.messages.intents import ReconcileRequested
from flareport_common.metrics import STREAM_PRODUCED
from flareport_common.replies import text
from flareport_common.streams.codec import encode
from flareport_dns_worker.cfclient import CfApiError, CfTransientError, CloudflareApi

log = structlog.get_logger("flareport.dns_worker.access_facts")
OWNER_EMAIL = "owner_email"
OTP_IDP_ID = "otp_idp_id"
CHECKED_AT = "checked_at"
FACTS = (OWNER_EMAIL, OTP_IDP_ID)
MEMBERS = "/accounts/{account_id}/members"
IDENTITY_PROVIDERS = "/accounts/{account_id}/access/identity_providers"
MEMBERS_PER_PAGE = 50  # Cloudflare's maximum for the members list
IDPS_PER_PAGE = 50
OTP_TYPE = "onetimepin"


class _Keep:
    """Cloudflare could not be asked: keep what is stored."""


KEEP = _Keep()


def member_email(member: Mapping[str, Any]) -> str | None:
    user = member.get("user")
    email = (user.get("email") if isinstance(user, Mapping) else None) or member.get("email")
    return str(email) if email else None


def _privileged(role: Mapping[str, Any]) -> bool:
    name = str(role.get("name") or "")
    permissions = role.get("permissions")
    analytics = permissions.get("analytics") if isinstance(permissions, Mapping) else None
    reads_analytics = isinstance(analytics, Mapping) and analytics.get("read") is True
    return name == "Administrator" or reads_analytics or "owner" in name.lower()


def pick_owner_email(members: Sequence[Mapping[str, Any]]) -> str | None:
    """DockFlare's choice of "the account owner": the first member with a privileged role, else the first member."""
    for member in members:
        email = member_email(member)
        roles = member.get("roles") or []
        if email and any(isinstance(role, Mapping) and _privileged(role) for role in roles):
            return email
    return next((email for member in members if (email := member_email(member))), None)


def pick_otp_idp_id(providers: Sequence[Mapping[str, Any]]) -> str | None:
    return next((str(p["id"]) for p in providers if p.get("type") == OTP_TYPE and p.get("id")), None)


class AccessFactsFinder:
    def __init__(
        self,
        api: CloudflareApi,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        interval_seconds: float,
        owner_email: str | None = None,
    ) -> None:
        self._api = api
        self._redis = redis
        self._keys = keys
        self._interval = interval_seconds
        self._configured_owner = owner_email
        self._reported: dict[str, str] = {}  # fact -> the refusal last logged for it

    async def refresh(self, *, force: bool = True) -> dict[str, str]:
        """Ask Cloudflare (unless another replica did less than an interval ago and ``force`` is false), store what
        changed, and send the reconcile intent when anything did. Returns the facts now stored."""
        key = self._keys.access_facts
        if not force:
            checked = await self._redis.hget(key, CHECKED_AT)
            if checked is not None and time.time() - float(text(checked)) < self._interval * 0.9:
                return await self._stored()
        found: dict[str, str | _Keep | None] = {
            OWNER_EMAIL: self._configured_owner or await self._ask(OWNER_EMAIL),
            OTP_IDP_ID: await self._ask(OTP_IDP_ID),
        }
        before = await self._stored()
        after = {name: value for name, value in before.items() if name in FACTS}
        for name, value in found.items():
            if isinstance(value, str):
                after[name] = value
            elif value is None:
                after.pop(name, None)
        changed = sorted(name for name in FACTS if before.get(name) != after.get(name))
        pipe = self._redis.pipeline(transaction=True)
        gone = [name for name in FACTS if name not in after]
        if gone:
            pipe.hdel(key, *gone)
        fields: dict[Any, Any] = {**after, CHECKED_AT: f"{time.time():.3f}"}
        pipe.hset(key, mapping=fields)
        if changed:
            intent = ReconcileRequested(scope="all", verify=False, extra={"reason": "access_facts", "changed": changed})
            pipe.xadd(self._keys.intents, encode(intent))  # type: ignore[arg-type]  # no MAXLEN: the reconciler trims
        await pipe.execute()
        if changed:
            STREAM_PRODUCED.labels(self._keys.intents).inc()
            log.info("access_facts.changed", changed=changed, known=sorted(after))
        return after

    async def _stored(self) -> dict[str, str]:
        raw: dict[Any, Any] = await self._redis.hgetall(self._keys.access_facts)
        return {text(k): text(v) for k, v in raw.items()}

    async def _ask(self, fact: str) -> str | _Keep | None:
        try:
            if fact == OWNER_EMAIL:
                members = await self._api.list_all(MEMBERS, per_page=MEMBERS_PER_PAGE)
                value = pick_owner_email(members)
                missing = "the account lists no member"
            else:
                providers = await self._api.list_all(IDENTITY_PROVIDERS, per_page=IDPS_PER_PAGE)
                value = pick_otp_idp_id(providers)
                missing = "no One-time PIN login method in the Zero Trust organisation"
        except CfApiError as error:
            self._report(fact, error.explain())
            return None
        except CfTransientError as error:
            log.warning("access_facts.unavailable", fact=fact, error=str(error))
            return KEEP
        if value is None:
            self._report(fact, missing)
        elif self._reported.pop(fact, None) is not None:
            log.info("access_facts.found_again", fact=fact)
        return value

    def _report(self, fact: str, reason: str) -> None:
        if self._reported.get(fact) == reason:
            return  # logged once, until the answer changes
        self._reported[fact] = reason
        log.error("access_facts.missing", fact=fact, reason=reason)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh at start (always) and every interval (unless another replica just did) until ``stop``."""
        force = True
        while not stop.is_set():
            try:
                await self.refresh(force=force)
            except Exception:  # a Redis hiccup must not end the loop; the next round tries again
                log.exception("access_facts.refresh_failed")
            force = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
