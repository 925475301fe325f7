"""Tunnels: find or create an agent's tunnel and fetch its token, delete tunnels we made, sync ingress.

Ingress is synced with at most one GET and one PUT, and usually with no call at all: the observed state of
each tunnel (the configuration we last saw or wrote, its Cloudflare ``version``, the rule keys we own — see
``ingress_plan`` — and when we last read it) is in Redis. When the desired rules already match that copy,
nothing is sent. When they do not, the worker reads the live configuration first — a PUT replaces the whole
ingress, so writing from a stale copy could drop a rule someone added in the dashboard since — plans against it
and PUTs only if it still differs.

A burst of changes may skip that GET: ``ingress_trust`` says for how long after a real read the cached copy
stands in for it, and how a PUT's answer shows that someone else wrote in between (the tripwire).

The other exception to "read before PUT": a tunnel this worker has just created. Its configuration is known (it
has none), so ``ensure`` records that as the observed copy with a short trust window
(``FRESH_TUNNEL_TRUST_SECONDS``); the first ingress sync within it PUTs without the GET. A tunnel found by
name, a create whose answer was lost, or a window that has passed all get the GET as usual, so rules someone
else added are kept. Any later sync reads first again: the mark is dropped with the first PUT, which opens no
trust window (nothing was read).

Tunnels are created remotely managed (``config_src: cloudflare``) so that ingress lives in Cloudflare and
the agent only runs ``cloudflared tunnel run`` with the token. A new tunnel costs one call: the create is
sent without looking the name up first — names are unique among an account's live tunnels, so Cloudflare
refuses a duplicate (``409``, code 1013) and only then is the tunnel looked up by name and adopted — and
the token comes from the create's answer (``token``), with ``GET .../token`` only for a tunnel the worker
did not just create. The ids of tunnels Flareport created are kept in a Redis set: ``delete_tunnel``
removes only those, never a tunnel it merely adopted by name.

Deleting a tunnel: Cloudflare refuses to delete a tunnel that has connections (code 1022), and it keeps tracking a
stopped connector's connections for minutes. The reconciler sends the deletion right after the agent's
``stop_tunnel``, so the connector is often still running, or just stopped. The worker therefore cleans the
tunnel's connections (``DELETE .../connections``: the lingering ones of a stopped connector go) and deletes
again; while a connector still runs, it retries with backoff, publishing a ``pending`` result with the reason
(the agent stays ``decommissioning`` with it), until the deadline (``delete_deadline_seconds`` from the job,
so a restart or another replica keeps the same one); past it, the tunnel is deleted with ``cascade=true``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import structlog

from flareport_common.backoff import Backoff
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DeleteTunnel, EnsureTunnel, SyncTunnelIngress
from flareport_common.messages.cfresults import CfError, TunnelEnsured
from flareport_common.parcels import stash
from flareport_common.redisconn import replicated
from flareport_common.redissettings import RedisNodes
from flareport_dns_worker.cfclient import CfApiError, CfTransientError, CloudflareApi
from flareport_dns_worker.ingress_plan import plan_ingress
from flareport_dns_worker.ingress_trust import READ_AT, VERSION, changed_elsewhere, config_version, trusted_version
from flareport_dns_worker.metrics import CONFLICTS
from flareport_dns_worker.outcome import Outcome

TUNNELS = "/accounts/{account_id}/cfd_tunnel"
TUNNEL = TUNNELS + "/{tunnel_id}"
CONFIG = TUNNEL + "/configurations"
# Error kind of an ``ensure_tunnel`` claim whose token hash is not that of the tunnel's token.
TOKEN_MISMATCH = "token_mismatch"  # noqa: S105 - an error kind, not a secret
# Cloudflare's code for "You already have a tunnel with this name" (answered with HTTP 409).
TUNNEL_NAME_TAKEN = 1013
# Cloudflare's code for a delete of a tunnel that still has (active or lingering) connections.
TUNNEL_HAS_CONNECTIONS = 1022
# Error kind of a progress result: the deletion waits for the tunnel's connections to drain.
PENDING = "pending"
# How long the empty configuration of a tunnel we just created is trusted without a GET. The first ingress
# job normally follows the create within a second (result -> reconciler -> job); the bound keeps a tunnel
# whose first rules come much later (an agent without containers) from being written over a dashboard edit.
FRESH_TUNNEL_TRUST_SECONDS = 120.0
# Field of a tunnel's observed hash: until when (epoch seconds) its cached configuration is known to be the
# one Cloudflare has, because this worker created the tunnel and nothing has been written to it since.
PRISTINE_UNTIL = "pristine_until"
log = structlog.get_logger("flareport.dns_worker.tunnels")


class JobFailed(Exception):
    """The job cannot succeed as asked (Cloudflare refused it); the result carries the error."""

    def __init__(self, error: CfError) -> None:
        super().__init__(error.message)
        self.error = error


def api_error(error: CfApiError, *, hostname: str | None = None, path: str | None = None) -> CfError:
    """Cloudflare's refusal as a result's error: its kind (``conflict``, ``permission``, ``not_enabled``, ``quota``,
    ``invalid``) and, for a missing permission or Zero Trust or a full quota, a message saying so."""
    kind = error.kind if error.kind in ("conflict", "permission", "not_enabled", "quota") else "invalid"
    return CfError(code=error.code, message=error.explain(), hostname=hostname, path=path, kind=kind)


Progress = Callable[[CfError], Awaitable[None]]


class Tunnels:
    def __init__(
        self,
        api: CloudflareApi,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        delete_deadline_seconds: float = 600.0,
        trust_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
        nodes: RedisNodes | None = None,
    ) -> None:
        self._api = api
        self._nodes = nodes or RedisNodes()
        self._redis = redis
        self._keys = keys
        self._delete_deadline = delete_deadline_seconds
        self._trust_seconds = trust_seconds
        # Epoch seconds; the trust windows of cached configurations (pristine, read) are measured with it.
        self._clock = clock

    # ---- ingress -------------------------------------------------------------------------------------------

    async def sync_ingress(
        self, job: SyncTunnelIngress, *, fresh: bool = False, prefetched: dict[bytes, bytes] | None = None
    ) -> Outcome:
        """``prefetched``: the target's cached state when the caller read it with the lease it holds."""
        key = self._keys.target_observed(job.target)
        observed: dict[Any, Any] = prefetched if prefetched is not None else await self._redis.hgetall(key)
        owned_raw = observed.get(b"owned")
        owned = set(json.loads(owned_raw)) if owned_raw is not None else None
        cached = observed.get(b"config")
        now = self._clock()
        current: dict[str, Any] | None = None
        base: int | None = None  # Cloudflare's version of ``current``, when known: what the PUT must answer + 1
        trusted = False
        if cached is not None and not fresh:
            cached_config: dict[str, Any] = json.loads(cached)
            plan = plan_ingress(cached_config, job.rules, owned, prune=job.prune)
            if not plan.changed:
                return Outcome(errors=list(plan.conflicts))
            if _pristine(observed, now):
                current = cached_config  # a tunnel we just created: its configuration is known without a GET
            elif (version := trusted_version(observed, now=now, window_seconds=self._trust_seconds)) is not None:
                current, base, trusted = cached_config, version, True
        read_at: float | None = None
        if current is None:
            read_at = self._clock()  # before the call (and its rate-limit wait): the window never outlasts the read
            try:
                envelope = await self._api.request("GET", CONFIG, tunnel_id=job.tunnel_id)
            except CfApiError as error:
                raise JobFailed(api_error(error)) from error
            result = envelope.get("result") or {}
            current = result.get("config") or {}
            base = config_version(result.get("version"))
        plan = plan_ingress(current, job.rules, owned, prune=job.prune)
        CONFLICTS.labels("ingress").inc(len(plan.conflicts))
        outcome = Outcome(errors=list(plan.conflicts))
        config, version, overwritten = current, base, False
        if plan.changed:
            claimed = await self._claim_ahead(key, owned, plan.owned)
            outcome.writes += 1
            try:
                answer = await self._api.request("PUT", CONFIG, body={"config": plan.config}, tunnel_id=job.tunnel_id)
            except CfApiError as error:
                if claimed:  # refused: nothing was written, so the keys owned ahead were never ours
                    await self._restore_owned(key, owned)
                raise JobFailed(api_error(error)) from error
            except CfTransientError:
                # The PUT may have been applied without its answer reaching us: the copy's version is unknown now,
                # and the job's next delivery must read first rather than raise the tripwire over our own write.
                await self._redis.hdel(key, READ_AT)
                raise
            result = answer.get("result") or {}
            config = result.get("config") or plan.config
            version = config_version(result.get("version"))
            if base is not None and version is not None and version != base + 1:
                overwritten = True
                changed_elsewhere(job.tunnel_id, base, version, trusted=trusted)
        fields: dict[Any, str] = {"owned": json.dumps(sorted(plan.owned)), "config": json.dumps(config)}
        dropped: list[str] = []
        if version is not None:
            fields[VERSION] = str(version)
        else:
            dropped.append(VERSION)  # no version, no tripwire: the copy is never trusted without one
        if overwritten:
            dropped.append(READ_AT)  # someone else writes this tunnel: its next sync reads first
        elif read_at is not None:
            fields[READ_AT] = str(int(read_at * 1000))
        if plan.changed:
            # From now on others may have seen (and edited) what we wrote: later syncs read before writing.
            dropped.append(PRISTINE_UNTIL)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        if dropped:
            pipe.hdel(key, *dropped)
        await pipe.execute()
        return outcome

    async def _claim_ahead(self, key: str, owned: set[str] | None, after: Iterable[str]) -> bool:
        """Before a PUT that writes rule keys the owned set lacks: add them (keeping every key owned now, as the PUT
        may fail) and drop the cached configuration, and have a replica hold that (REDIS_WAIT_REPLICAS); the write
        after the answer puts both back. The set is what lets a later job remove a rule of ours, and the cached copy
        is what a later job compares with first. Both written only after the answer, a Redis failover could lose
        them while Cloudflare kept the rule, which then counted as someone else's (or was not even seen) and stayed.
        A key owned ahead whose rule never gets written costs nothing: the plan removes only rules the live
        configuration holds, and the set is written whole after the PUT; a job after a failed PUT reads first. A PUT
        Cloudflare refused wrote nothing: ``_restore_owned`` takes the keys back, so that a rule someone adds for one
        of them later is never taken for ours. True when keys were added."""
        new = set(after) - (owned or set())
        if not new:
            return False
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, "owned", json.dumps(sorted(new | (owned or set()))))
        pipe.hdel(key, "config")
        await pipe.execute()
        await replicated(self._redis, self._nodes, self._keys.replicated_channel, what="ingress-rules")
        return True

    async def _restore_owned(self, key: str, owned: set[str] | None) -> None:
        """The owned set as it was before ``_claim_ahead`` (none: unknown, as it was)."""
        if owned is None:
            await self._redis.hdel(key, "owned")
        else:
            await self._redis.hset(key, "owned", json.dumps(sorted(owned)))

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
            if tunnel is None and job.create and not claim:
                tunnel, created = await self._create_or_adopt(name)
            elif tunnel is None and not (claim and job.tunnel_id):
                tunnel = await self._by_name(name)
            if tunnel is None:
                why = "a claim never creates one" if claim else "create=false"
                return self._refused(
                    job, CfError(message=f"no tunnel {job.tunnel_id or name!r} and {why}", kind="missing")
                )
            token = tunnel.get("token")  # only in the answer to our own create
            if not isinstance(token, str) or not token:
                answer = await self._api.request("GET", TUNNEL + "/token", tunnel_id=str(tunnel["id"]))
                token = str(answer.get("result"))
        except CfApiError as error:
            return self._refused(job, api_error(error))
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
            # The token waits under the agent's own key: the shared results stream carries only where it is.
            token_ref=await stash(self._redis, self._keys, job.agent_id, token),
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

    async def _create_or_adopt(self, name: str) -> tuple[dict[str, Any], bool]:
        """Create the tunnel, or adopt the live one of that name: ``(tunnel, created)``.

        The create goes first, without a lookup: Cloudflare keeps names unique among live tunnels, so when
        one exists (made by someone else, or by an attempt of ours whose result was lost) the create is
        refused and changes nothing, and the tunnel is looked up by name and adopted, as a lookup first
        would have done — at the cost of one call more in that rare case, one call less for every new tunnel.
        """
        body = {
            "name": name,
            "config_src": "cloudflare",
            "tunnel_secret": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        try:
            envelope = await self._api.request("POST", TUNNELS, body=body)
        except CfApiError as error:
            if error.code != TUNNEL_NAME_TAKEN and error.status != 409:
                raise
            return await self._adopt(name), False  # the name is taken: refused, nothing was created
        except CfTransientError as error:
            # The create may have gone through before the answer was lost: look before anything else (a second
            # create would fail on the name). The lease on this agent's target means it was ours.
            found = await self._by_name(name) if error.ambiguous else None
            if found is None:
                raise
            await self._redis.sadd(self._keys.cf_created_tunnels, str(found["id"]))
            return found, True  # without the answer's token; its configuration is not trusted either
        tunnel: dict[str, Any] = envelope.get("result") or {}
        tunnel_id = str(tunnel["id"])
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(self._keys.cf_created_tunnels, tunnel_id)
        # The ingress target of this tunnel (``SyncTunnelIngress.target``): a new tunnel has no configuration.
        observed = self._keys.target_observed(f"tunnel:{tunnel_id}")
        until = self._clock() + FRESH_TUNNEL_TRUST_SECONDS
        pipe.hset(observed, mapping={"config": "{}", PRISTINE_UNTIL: str(until)})
        await pipe.execute()
        return tunnel, True

    async def _adopt(self, name: str) -> dict[str, Any]:
        found = await self._by_name(name)
        if found is None:
            # Taken a moment ago, gone now (deleted in between): the job comes back and creates it then.
            raise CfTransientError(f"tunnel name {name!r} is taken but no live tunnel has it", ambiguous=False)
        return found

    async def delete(self, job: DeleteTunnel, progress: Progress | None = None) -> Outcome:
        created = await self._redis.sismember(self._keys.cf_created_tunnels, job.tunnel_id)
        if not created:
            raise JobFailed(
                CfError(message=f"tunnel {job.tunnel_id} was not created by Flareport; left in place", kind="refused")
            )
        deadline = job.occurred_at.timestamp() + self._delete_deadline
        backoff = Backoff(initial=0.5, maximum=max(0.5, min(30.0, self._delete_deadline / 10)))
        outcome = Outcome()
        reported = False
        while True:
            cascade = time.time() >= deadline
            refused = await self._try_delete(job.tunnel_id, cascade=cascade, outcome=outcome)
            if refused is None:
                break
            # It has connections. The lingering ones of a stopped connector can be cleaned up at once.
            outcome.writes += 1
            try:
                await self._api.request("DELETE", TUNNEL + "/connections", tunnel_id=job.tunnel_id)
            except CfApiError as error:
                if error.status != 404:
                    raise JobFailed(api_error(error)) from error
            refused = await self._try_delete(job.tunnel_id, cascade=False, outcome=outcome)
            if refused is None:
                break
            # A connector still runs (the agent has not stopped cloudflared yet): wait for it, up to the deadline.
            until = datetime.fromtimestamp(deadline, UTC).strftime("%H:%M:%S UTC")
            reason = (
                f"tunnel {job.tunnel_id} still has active connections (its connector is running); "
                f"retrying until {until}, then deleting it with cascade"
            )
            log.info("tunnel.delete_waiting", tunnel_id=job.tunnel_id, error=refused.message)
            if progress is not None and not reported:
                reported = True
                await progress(CfError(code=refused.code, message=reason, kind=PENDING))
            await asyncio.sleep(max(0.0, min(backoff.next(), deadline - time.time())))
        pipe = self._redis.pipeline(transaction=True)
        pipe.srem(self._keys.cf_created_tunnels, job.tunnel_id)
        pipe.delete(self._keys.target_observed(job.target))
        await pipe.execute()
        return outcome

    async def _try_delete(self, tunnel_id: str, *, cascade: bool, outcome: Outcome) -> CfApiError | None:
        """Delete the tunnel: None when it is gone, the refusal when it still has connections."""
        outcome.writes += 1
        try:
            await self._api.request(
                "DELETE", TUNNEL, params={"cascade": "true"} if cascade else None, tunnel_id=tunnel_id
            )
        except CfApiError as error:
            if error.status == 404:
                return None  # gone already (an earlier attempt got through): that is the goal
            if not cascade and _has_connections(error):
                return error
            raise JobFailed(api_error(error)) from error
        return None


def _has_connections(error: CfApiError) -> bool:
    return error.code == TUNNEL_HAS_CONNECTIONS or "connection" in error.message.lower()


def _pristine(observed: Mapping[Any, Any], now: float) -> bool:
    """True while a tunnel's cached configuration is still the empty one it was created with (see above)."""
    until = observed.get(PRISTINE_UNTIL.encode())
    return until is not None and float(until) > now


def _token_matches(token: str, token_sha256: str) -> bool:
    digest = hashlib.sha256(token.encode()).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII text, and the claimed hash comes from the agent.
    return hmac.compare_digest(digest.encode(), token_sha256.encode("utf-8", "surrogatepass"))
