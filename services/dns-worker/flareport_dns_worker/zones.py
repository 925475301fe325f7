"""Which zone a hostname belongs to.

A hostname goes to the zone named by its job when that zone exists in the account and contains it, else to
the longest zone suffix among the account's zones (``a.dev.example.com`` -> ``dev.example.com`` before
``example.com``). The default zone (``CLOUDFLARE_ZONE_ID``) is part of that list even when the token cannot
list zones. A hostname in no zone is a per-rule error of kind ``zone``, never a guess.

The account's zones are listed rarely: the list is cached in Redis for every replica and refreshed after
``zone_refresh_seconds``, or sooner (at most once a minute) when a hostname matches no known zone — a zone
added a moment ago should not wait five minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_dns_worker.cfclient import CfApiError, CloudflareApi

MISS_REFRESH_SECONDS = 60.0
ZONES_PER_PAGE = 50  # Cloudflare's maximum for GET /zones


def longest_suffix(hostname: str, zones: Mapping[str, str]) -> str | None:
    """The name of the zone that contains ``hostname`` with the longest suffix, or None."""
    name = hostname.lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    best: str | None = None
    for zone in zones:
        if (name == zone or name.endswith("." + zone)) and (best is None or len(zone) > len(best)):
            best = zone
    return best


def resolve(hostname: str, zones: Mapping[str, str], preferred: str | None) -> str | None:
    """Zone name for ``hostname``: ``preferred`` when it is a known zone containing it, else the longest suffix."""
    if preferred:
        wanted = preferred.lower().rstrip(".")
        name = hostname.lower().rstrip(".")
        if wanted in zones and (name == wanted or name.endswith("." + wanted)):
            return wanted
    return longest_suffix(hostname, zones)


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

    async def resolve(self, hostname: str, preferred: str | None = None) -> tuple[str, str] | None:
        """``(zone_name, zone_id)`` for ``hostname``, refreshing the list once on a miss."""
        zones = await self.zones()
        name = resolve(hostname, zones, preferred)
        if name is None and time.time() - self._fetched_at >= MISS_REFRESH_SECONDS:
            zones = await self.zones(force=True)
            name = resolve(hostname, zones, preferred)
        return (name, zones[name]) if name is not None else None
