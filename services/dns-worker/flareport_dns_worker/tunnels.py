"""Tunnels: find or create an agent's tunnel and fetch its token, delete tunnels we made, sync ingress.

Ingress is synced with at most one GET and one PUT, and usually with no call at all: the observed state of
each tunnel (the configuration we last saw or wrote, and the rule keys we own — see ``ingress_plan``) is in
Redis. When the desired rules already match that copy, nothing is sent. When they do not, the worker reads
the live configuration first — a PUT replaces the whole ingress, so writing from a stale copy could drop a
rule someone added in the dashboard since — plans against it and PUTs only if it still differs.

Tunnels are created remotely managed (``config_src: cloudflare``) so that ingress lives in Cloudflare and
the agent only runs ``cloudflared tunnel run`` with the token. The ids of tunnels Flareport created are
kept in a Redis set: ``delete_tunnel`` removes only those, never a tunnel it merely adopted by name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import redis.asyncio as aioredis
import structlog

from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DeleteTunnel, EnsureTunnel, SyncTunnelIngress
from flareport_common.messages.cfresults import CfError, TunnelEnsured
from flareport_dns_worker.cfclient import CfApiError, CfTransientError, CloudflareApi
from flareport_dns_worker.ingress_plan import plan_ingress
from flareport_dns_worker.metrics import CONFLICTS
from flareport_dns_worker.outcome import Outcome

TUNNELS = "/accounts/{account_id}/cfd_tunnel"
TUNNEL = TUNNELS + "/{tunnel_id}"
CONFIG = TUNNEL + "/configurations"
# Error kind of an ``ensure_tunnel`` claim whose token hash is not that of the tunnel's token.
TOKEN_MISMATCH = "token_mismatch"  # noqa: S105 - an error kind, not a secret
log = structlog.get_logger("flareport.dns_worker.tunnels")


class JobFailed(Exception):
    """The job cannot succeed as asked (Cloudflare refused it); the result carries the error."""

    def __init__(self, error: CfError) -> None:
        super().__init__(error.message)
        self.error = error


def api_error(error: CfApiError, *, hostname: str | None = None, kind: str = "invalid") -> CfError:
    return CfError(code=error.code, message=error.message, hostname=hostname, kind=kind)


class Tunnels:
    def __init__(self, api: CloudflareApi, redis: aioredis.Redis, keys: Keys) -> None:
        self._api = api
        self._redis = redis
        self._keys = keys

    # ---- ingress -------------------------------------------------------------------------------------------

    async def sync_ingress(self, job: SyncTunnelIngress, *, fresh: bool = False) -> Outcome:
        key = self._keys.target_observed(job.target)
        observed: dict[Any, Any] = await self._redis.hgetall(key)
        owned_raw = observed.get(b"owned")
        owned = set(json.loads(owned_raw)) if owned_raw is not None else None
        cached = observed.get(b"config")
        if cached is not None and not fresh:
            plan = plan_ingress(json.loads(cached), job.rules, owned, prune=job.prune)
            if not plan.changed:
                return Outcome(errors=list(plan.conflicts))
        try:
            envelope = await self._api.request("GET", CONFIG, tunnel_id=job.tunnel_id)
        except CfApiError as error:
            raise JobFailed(api_error(error)) from error
        current = (envelope.get("result") or {}).get("config") or {}
        plan = plan_ingress(current, job.rules, owned, prune=job.prune)
        CONFLICTS.labels("ingress").inc(len(plan.conflicts))
        outcome = Outcome(errors=list(plan.conflicts))
        config = current
        if plan.changed:
            outcome.writes += 1
            try:
                answer = await self._api.request("PUT", CONFIG, body={"config": plan.config}, tunnel_id=job.tunnel_id)
            except CfApiError as error:
                raise JobFailed(api_error(error)) from error
            config = (answer.get("result") or {}).get("config") or plan.config
        await self._redis.hset(key, mapping={"owned": json.dumps(sorted(plan.owned)), "config": json.dumps(config)})
        return outcome

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def ensure(self, job: EnsureTunnel) -> TunnelEnsured:
        name = job.tunnel_name or f"flareport-{job.agent_id}"
        # A claim (``token_sha256``) re-establishes a tunnel the agent already runs: it never creates one (a new
        # tunnel's token could not match anyway) and, given an id, never falls back to another tunnel by name.
        claim = job.token_sha256 is not None
        tunnel: dict[str, Any] | None = None
        created = False
        try:
            if job.tunnel_id:
                tunnel = await self._get(job.tunnel_id)
            if tunnel is None and not (claim and job.tunnel_id):
                tunnel = await self._by_name(name)
            if tunnel is None and job.create and not claim:
                tunnel, created = await self._create(name)
            if tunnel is None:
                why = "a claim never creates one" if claim else "create=false"
                return self._refused(
                    job, CfError(message=f"no tunnel {job.tunnel_id or name!r} and {why}", kind="missing")
                )
            answer = await self._api.request("GET", TUNNEL + "/token", tunnel_id=str(tunnel["id"]))
        except CfApiError as error:
            return self._refused(job, api_error(error))
        token = str(answer.get("result"))
        if job.token_sha256 is not None and not _token_matches(token, job.token_sha256):
            log.warning("tunnel.claim_refused", agent_id=job.agent_id, tunnel_id=str(tunnel["id"]))
            return self._refused(
                job,
                CfError(
                    message=f"the agent's token does not match tunnel {tunnel['id']}; token not handed out",
                    kind=TOKEN_MISMATCH,
                ),
            )
        return TunnelEnsured(
            job_id=job.id,
            agent_id=job.agent_id,
            ok=True,
            correlation_id=job.correlation_id,
            tunnel_id=str(tunnel["id"]),
            tunnel_name=str(tunnel["name"]),
            token=token,
            created=created,
        )

    @staticmethod
    def _refused(job: EnsureTunnel, error: CfError) -> TunnelEnsured:
        return TunnelEnsured(
            job_id=job.id, agent_id=job.agent_id, ok=False, correlation_id=job.correlation_id, error=error
        )

    async def _get(self, tunnel_id: str) -> dict[str, Any] | None:
        try:
            envelope = await self._api.request("GET", TUNNEL, tunnel_id=tunnel_id)
        except CfApiError as error:
            if error.status == 404:
                return None
            raise
        tunnel: dict[str, Any] = envelope.get("result") or {}
        return tunnel if tunnel and not tunnel.get("deleted_at") else None

    async def _by_name(self, name: str) -> dict[str, Any] | None:
        found = await self._api.list_all(TUNNELS, per_page=1000, params={"name": name, "is_deleted": "false"})
        return found[0] if found else None

    async def _create(self, name: str) -> tuple[dict[str, Any], bool]:
        body = {
            "name": name,
            "config_src": "cloudflare",
            "tunnel_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        try:
            envelope = await self._api.request("POST", TUNNELS, body=body)
        except CfTransientError as error:
            # The create may have gone through before the answer was lost: look before anything else (a second
            # create would fail on the name). The lease on this agent's target means it was ours.
            found = await self._by_name(name) if error.ambiguous else None
            if found is None:
                raise
            envelope = {"result": found}
        tunnel: dict[str, Any] = envelope.get("result") or {}
        await self._redis.sadd(self._keys.cf_created_tunnels, str(tunnel["id"]))
        return tunnel, True

    async def delete(self, job: DeleteTunnel) -> Outcome:
        created = await self._redis.sismember(self._keys.cf_created_tunnels, job.tunnel_id)
        if not created:
            raise JobFailed(
                CfError(message=f"tunnel {job.tunnel_id} was not created by Flareport; left in place", kind="refused")
            )
        try:
            await self._api.request("DELETE", TUNNEL, tunnel_id=job.tunnel_id)
        except CfApiError as error:
            if error.status != 404:
                raise JobFailed(api_error(error)) from error
        pipe = self._redis.pipeline(transaction=True)
        pipe.srem(self._keys.cf_created_tunnels, job.tunnel_id)
        pipe.delete(self._keys.target_observed(job.target))
        await pipe.execute()
        return Outcome(writes=1)


def _token_matches(token: str, token_sha256: str) -> bool:
    digest = hashlib.sha256(token.encode()).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII text, and the claimed hash comes from the agent.
    return hmac.compare_digest(digest.encode(), token_sha256.encode("utf-8", "surrogatepass"))
