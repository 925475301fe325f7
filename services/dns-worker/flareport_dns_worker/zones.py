"""Which zone a record is written in: the job's zone, and only when that zone really holds the name.

A ``sync_dns_zone`` job names its zone, and that zone is authoritative: the worker never writes a record in any
other zone. A record is written only if

* its name is the job's zone or a name under it — a job for ``example.test`` carrying ``pwn.victim.test`` is a
  per-record error, even when ``victim.test`` is a zone of the account (an agent chooses the ``zonename`` label,
  so falling back to "the zone that fits" would let it write into any zone of the account);
* the job's zone is a zone of this account — no fallback to a longer or shorter suffix that is;
* no *delegated subzone* of the account holds the name: with zones ``example.com`` and ``dev.example.com``,
  ``a.dev.example.com`` belongs to ``dev.example.com``. A record for it in ``example.com`` would never be served
  (the delegation shadows it), and writing it into ``dev.example.com`` would be a write into a zone the job did
  not name; so a job for ``example.com`` carrying it is an error that names the zone to use.

Each of these is a per-record error of kind ``zone`` (the rule shows it); the other records of the job converge.
Nothing else in the worker looks a zone up by name (Access apps and tunnels are account-wide), so there is no
"longest suffix wins" guess left anywhere: when the zone of a name cannot be stated with certainty, nothing is
written.

The account's zones are listed rarely: the list is cached in Redis for every replica and refreshed after
``zone_refresh_seconds``, or sooner (at most once a minute) when a job names a zone the list does not have — a
zone added a moment ago should not wait five minutes. The default zone (``CLOUDFLARE_ZONE_ID``) is part of that
list even when the token cannot list zones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_dns_worker.cfclient import CfApiError, CloudflareApi
from flareport_dns_worker.names import bare, base_of, inside

MISS_REFRESH_SECONDS = 60.0
ZONES_PER_PAGE = 50  # Cloudflare's maximum for GET /zones


def longest_suffix(hostname: str, zones: Mapping[str, str]) -> str | None:
    """The name of the zone that contains ``hostname`` with the longest suffix, or None. Looks up each suffix of
    the name (a few dictionary lookups) instead of testing every zone of the account against it."""
    labels = base_of(hostname).split(".")
    for start in range(len(labels)):
        suffix = ".".join(labels[start:])
        if suffix in zones:
            return suffix
    return None


def zone_problem(hostname: str, job_zone: str, zones: Mapping[str, str]) -> str | None:
    """Why a record for ``hostname`` may not be written in ``job_zone`` (see the module doc), or None."""
    zone = bare(job_zone)
    host = base_of(hostname)
    if not inside(host, zone):
        return f"{hostname} is not inside zone {zone}: a record is written only in the zone its job names"
    if zone not in zones:
        return f"zone {zone} is not a zone of this Cloudflare account"
    holder = longest_suffix(host, zones)
    if holder != zone:
        return (
            f"{hostname} belongs to the delegated zone {holder}, not {zone} (a record in {zone} would be shadowed); "
            f"set its zone to {holder}"
        )
    return None


class ZoneDirectory:
    """The account's zones (name -> id), cached in Redis and in memory."""

    def __init__(
        self,
        api: CloudflareApi,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        refresh_seconds: float,
        default_zone_id: str | None = None,
    ) -> None:
        self._api = api
        self._redis = redis
        self._keys = keys
        self._refresh_seconds = refresh_seconds
        self._default_zone_id = default_zone_id
        self._zones: dict[str, str] = {}
        self._fetched_at = 0.0

    async def zones(self, *, force: bool = False) -> dict[str, str]:
        now = time.time()
        if not force and self._zones and now - self._fetched_at < self._refresh_seconds:
            return self._zones
        if not force:
            raw = await self._redis.get(self._keys.cf_zones)
            if raw:
                cached = json.loads(raw)
                if now - float(cached["fetched_at"]) < self._refresh_seconds:
                    self._zones, self._fetched_at = dict(cached["zones"]), float(cached["fetched_at"])
                    return self._zones
        await self._refresh(now)
        return self._zones

    async def _refresh(self, now: float) -> None:
        listed = await self._api.list_all(
            "/zones", per_page=ZONES_PER_PAGE, params={"account.id": self._api.account_id}
        )
        zones = {str(z["name"]).lower(): str(z["id"]) for z in listed}
        if self._default_zone_id and self._default_zone_id not in zones.values():
            try:
                envelope = await self._api.request("GET", "/zones/{zone_id}", zone_id=self._default_zone_id)
                zone = envelope.get("result") or {}
                if zone.get("name"):
                    zones[str(zone["name"]).lower()] = self._default_zone_id
            except CfApiError:
                pass  # a default zone that does not exist simply matches nothing
        self._zones, self._fetched_at = zones, now
        await self._redis.set(
            self._keys.cf_zones, json.dumps({"fetched_at": now, "zones": zones}), ex=int(self._refresh_seconds * 2)
        )

    async def knowing(self, zone_name: str) -> dict[str, str]:
        """The account's zones (name -> id), listed again once (at most every minute) when ``zone_name`` is not
        among them: a zone added a moment ago is found, a zone that does not exist costs one list a minute.
        """
        zones = await self.zones()
        if bare(zone_name) not in zones and time.time() - self._fetched_at >= MISS_REFRESH_SECONDS:
            zones = await self.zones(force=True)
        return zones
