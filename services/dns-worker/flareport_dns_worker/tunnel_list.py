"""The account's tunnels and their connectors, listed into their read model (``flareport_common.tunnelview``).

The API never calls Cloudflare, so the tunnels page and ``flareport tunnels ls`` read what this module stores under
``Keys.cf_tunnels``: every live tunnel of the account (``GET /accounts/{id}/cfd_tunnel?is_deleted=false``) with its
connectors (``GET .../cfd_tunnel/{id}/connections``: version, architecture, origin IP, since when). Only a tunnel with a
running connector (status ``healthy`` or ``degraded``) has connections worth showing: one never connected
(``inactive``) has none and one ``down`` only the lingering ones of stopped connectors, so theirs are not asked for.
A listing costs one call plus one per connected tunnel, from the budget every Cloudflare call shares (with many
tunnels, list less often).

It runs at start and every ``CLOUDFLARE_TUNNEL_LIST_SECONDS`` (a replica skips its turn when another listed less
than an interval ago), and when an admin asks (a ``refresh_tunnels`` job; such a request is answered from a listing
younger than ``MIN_REFRESH_SECONDS`` so a button pressed repeatedly does not spend the shared rate budget).

A listing that fails keeps the tunnels of the last good one, with the error and when it happened: stale data shown
as stale says more than an empty page. The read-model counter is raised (after the write) whenever the stored
tunnels change, so open tunnels pages refresh themselves; a listing that finds the same tunnels changes only
``checked_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
import structlog

from flareport_common import readversion, tunnelview
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.tunnelview import Connector, TunnelInfo, TunnelsDocument
from flareport_dns_worker.cfclient import CfApiError, CfTransientError, CloudflareApi
from flareport_dns_worker.metrics import TUNNEL_LISTINGS

log = structlog.get_logger("flareport.dns_worker.tunnel_list")
TUNNELS = "/accounts/{account_id}/cfd_tunnel"
CONNECTIONS = TUNNELS + "/{tunnel_id}/connections"
PER_PAGE = 1000
# A refresh asked for by an admin within this many seconds of the last listing is answered by that listing.
MIN_REFRESH_SECONDS = 5.0
CONNECTED = ("healthy", "degraded")  # Cloudflare's statuses of a tunnel with at least one running connector


def _time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def connector(client: Mapping[str, Any]) -> Connector:
    """One entry of Cloudflare's connections list (a cloudflared process) as the read model keeps it."""
    conns = [c for c in client.get("conns") or [] if isinstance(c, Mapping)]
    opened = sorted(t for c in conns if (t := _time(c.get("opened_at"))) is not None)
    origin = next((str(c["origin_ip"]) for c in conns if c.get("origin_ip")), "")
    return Connector(
        id=str(client.get("id") or ""),
        version=str(client.get("version") or next((c.get("client_version") for c in conns), "") or ""),
        arch=str(client.get("arch") or ""),
        run_at=_time(client.get("run_at")),
        origin_ip=origin,
        opened_at=opened[0] if opened else None,
        connections=len(conns),
        colos=tuple(sorted({str(c["colo_name"]) for c in conns if c.get("colo_name")})),
        pending_reconnect=bool(conns) and all(bool(c.get("is_pending_reconnect")) for c in conns),
    )


def tunnel_info(tunnel: Mapping[str, Any], clients: Sequence[Mapping[str, Any]]) -> TunnelInfo:
    """A tunnel of Cloudflare's list with its connectors, as the read model keeps it."""
    return TunnelInfo(
        id=str(tunnel.get("id") or ""),
        name=str(tunnel.get("name") or ""),
        status=str(tunnel.get("status") or "inactive"),
        created_at=_time(tunnel.get("created_at")),
        conns_active_at=_time(tunnel.get("conns_active_at")),
        conns_inactive_at=_time(tunnel.get("conns_inactive_at")),
        remote_config=bool(tunnel.get("remote_config")),
        connectors=tuple(connector(c) for c in clients if isinstance(c, Mapping)),
    )


class TunnelList:
    def __init__(self, api: CloudflareApi, redis: aioredis.Redis, keys: Keys, *, interval_seconds: float) -> None:
        self._api = api
        self._redis = redis
        self._keys = keys
        self._interval = interval_seconds

    async def stored(self) -> TunnelsDocument:
        return tunnelview.decode(await self._redis.get(self._keys.cf_tunnels))

    async def refresh(self, *, younger_than: float | None = None) -> TunnelsDocument:
        """List the tunnels and store them, unless the stored listing is younger than ``younger_than`` seconds.
        Cloudflare refusing or failing is stored as the document's error, never raised."""
        before = await self.stored()
        age = None if before.checked_at is None else (utcnow() - before.checked_at).total_seconds()
        if younger_than is not None and age is not None and age < younger_than:
            return before
        try:
            tunnels = await self._list()
        except (CfApiError, CfTransientError) as error:
            reason = error.explain() if isinstance(error, CfApiError) else str(error)
            log.warning("tunnel_list.failed", error=reason)
            TUNNEL_LISTINGS.labels("failed").inc()
            after = TunnelsDocument(
                checked_at=before.checked_at, tunnels=before.tunnels, error=reason, failed_at=utcnow()
            )
        else:
            after = TunnelsDocument(checked_at=utcnow(), tunnels=tunnels)
            TUNNEL_LISTINGS.labels("ok").inc()
        await self._redis.set(self._keys.cf_tunnels, tunnelview.encode(after))
        if after.tunnels != before.tunnels or after.error != before.error:
            # Raised after the write, not in its transaction, so each stays in one hash slot (Redis Cluster): a page
            # that sees the new counter still sees the new listing, and a lost raise only delays a live refresh.
            pipe = self._redis.pipeline(transaction=True)
            readversion.bump(pipe, self._keys)
            await pipe.execute()
        return after

    async def _list(self) -> tuple[TunnelInfo, ...]:
        listed = await self._api.list_all(TUNNELS, per_page=PER_PAGE, params={"is_deleted": "false"})
        found = []
        for tunnel in listed:
            clients: list[dict[str, Any]] = []
            if not tunnel.get("id"):
                continue  # not a tunnel anyone could act on; never a call with an empty id
            if tunnel.get("status") in CONNECTED:
                try:
                    envelope = await self._api.request("GET", CONNECTIONS, tunnel_id=str(tunnel["id"]))
                except CfApiError as error:
                    if error.status != 404:  # deleted since it was listed: shown without connectors
                        raise
                else:
                    clients = [c for c in envelope.get("result") or [] if isinstance(c, dict)]
            found.append(tunnel_info(tunnel, clients))
        return tuple(sorted(found, key=lambda t: (t.name.lower(), t.id)))

    async def run(self, stop: asyncio.Event) -> None:
        """List at start and every interval (unless another replica just did) until ``stop``."""
        younger_than: float | None = None
        while not stop.is_set():
            try:
                await self.refresh(younger_than=younger_than)
            except Exception:  # a Redis hiccup must not end the loop; the next round tries again
                log.exception("tunnel_list.refresh_failed")
            younger_than = self._interval * 0.9
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
