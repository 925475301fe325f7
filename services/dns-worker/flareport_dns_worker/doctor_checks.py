"""``flareport doctor``'s checks beyond the token: the Redis server, and the tunnels a migration will reuse.

Redis: reachable with the settings every service uses, version 7 or newer (streams with XAUTOCLAIM and the
scripts' commands), and a ``maxmemory-policy`` that never evicts (an evicted stream or claims hash is lost work).

A tunnel named with ``--tunnel NAME_OR_ID`` (DockFlare's, before an agent is enrolled on it): it exists, is
remotely managed (its ingress lives in Cloudflare, where Flareport writes it; a locally managed tunnel's ingress
is in cloudflared's file and Flareport cannot serve it), its connections, and the forecast of what the first syncs
will adopt or leave as conflicts (``takeover.forecast``).
"""

from __future__ import annotations

from typing import Any

from flareport_common.redisconn import connect
from flareport_common.settings import DnsWorkerSettings
from flareport_dns_worker.cfclient import CfApiError, CfTransientError, CloudflareApi
from flareport_dns_worker.dns_plan import DnsRecord
from flareport_dns_worker.preflight import ACCESS_APPS, DNS_RECORDS, FAILED, OK, TUNNELS, Check, Report
from flareport_dns_worker.takeover import forecast

MIN_REDIS = (7, 0)
SAFE_EVICTION = "noeviction"
DNS_PER_PAGE = 5_000
ACCESS_PER_PAGE = 50
TUNNEL = TUNNELS + "/{tunnel_id}"


async def check_redis(settings: DnsWorkerSettings, report: Report) -> None:
    where = "REDIS_URL"
    try:
        redis = connect(settings.common, max_connections=2, wait_seconds=5)
        try:
            server: dict[str, Any] = await redis.info("server")
            memory: dict[str, Any] = await redis.info("memory")
        finally:
            await redis.aclose()
    except Exception as error:  # any failure to connect or to answer is the finding itself
        report.checks.append(Check("redis", True, FAILED, "", where, f"cannot reach Redis: {error}"))
        return
    version = str(server.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS:
        detail = f"Redis {version}; Flareport needs {MIN_REDIS[0]}.{MIN_REDIS[1]} or newer"
        report.checks.append(Check("redis", True, FAILED, "", where, detail))
        return
    report.checks.append(Check("redis", True, OK, "", where, f"Redis {version} reachable"))
    policy = str(memory.get("maxmemory_policy", SAFE_EVICTION))
    if policy != SAFE_EVICTION:
        detail = f"maxmemory-policy is {policy}: under memory pressure Redis may evict streams or claims"
        report.checks.append(Check("redis eviction", False, FAILED, "", where, detail))
        report.warnings.append(f"redis eviction: {detail}; set maxmemory-policy {SAFE_EVICTION}")


async def _find_tunnel(api: CloudflareApi, ref: str) -> dict[str, Any] | None:
    try:
        found = await api.request("GET", TUNNEL, tunnel_id=ref)
        tunnel: dict[str, Any] = found.get("result") or {}
        if tunnel and not tunnel.get("deleted_at"):
            return tunnel
    except CfApiError as error:
        if error.status not in (400, 404):  # not an id: look it up by name
            raise
    listed = await api.list_all(TUNNELS, per_page=1000, params={"name": ref, "is_deleted": "false"})
    return next((t for t in listed if t.get("name") == ref), None)


async def check_tunnel(api: CloudflareApi, settings: DnsWorkerSettings, ref: str, report: Report) -> None:
    name = f"tunnel {ref}"
    try:
        tunnel = await _find_tunnel(api, ref)
        if tunnel is None:
            report.checks.append(Check(name, True, FAILED, "", "GET " + TUNNELS, "no such tunnel in the account"))
            return
        tunnel_id = str(tunnel["id"])
        if tunnel.get("config_src", "cloudflare") != "cloudflare":
            detail = (
                f"{tunnel_id} is locally managed (config_src {tunnel.get('config_src')}): its ingress rules live in "
                "cloudflared's file; Flareport writes the remote configuration, so create a new tunnel instead"
            )
            report.checks.append(Check(name, True, FAILED, "", "GET " + TUNNEL, detail))
            return
        connections = len(tunnel.get("connections") or [])
        records: list[DnsRecord] = []
        for zone in report.zones:
            listed = await api.list_all(DNS_RECORDS, per_page=DNS_PER_PAGE, zone_id=str(zone["id"]))
            records.extend(DnsRecord.from_api(r) for r in listed)
        apps = await api.list_all(ACCESS_APPS, per_page=ACCESS_PER_PAGE)
    except (CfApiError, CfTransientError) as error:
        report.checks.append(Check(name, True, FAILED, "", "GET " + TUNNELS, f"Cloudflare refused a read: {error}"))
        return
    plan = forecast(tunnel_id, records, apps, settings.owner_id)
    report.takeovers[ref] = {"tunnel_id": tunnel_id, "name": tunnel.get("name"), **plan.to_json()}
    detail = (
        f"{tunnel_id}, remotely managed, {connections} connection(s); DNS records pointing to it: "
        f"{len(plan.adopt)} adopted in place, {len(plan.ours)} already Flareport's, {len(plan.conflicts)} conflict(s); "
        f"{len(plan.dockflare_apps)} DockFlare Access app(s)"
    )
    report.checks.append(Check(name, True, OK, "", "GET " + TUNNEL, detail))
    for host, why in sorted(plan.conflicts.items()):
        report.warnings.append(f"{host}: left untouched, a conflict: {why} (adopt it with a manual rule: adopt)")
    if plan.dockflare_apps and not settings.adopt_dockflare_access:
        report.warnings.append(
            f"{len(plan.dockflare_apps)} DockFlare Access app(s) will be conflicts: set "
            "FLAREPORT_ADOPT_DOCKFLARE_ACCESS=true on the dns-worker to adopt them in place"
        )
