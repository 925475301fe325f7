"""Applying a ``sync_access_app`` job: one self-hosted Access application per host+path, tagged as ours.

The job's app is already resolved by the reconciler (``flareport_common.access``): either reusable policies (one
per access group) or inline ones, never both. An app with both, or with neither, or on a path Access cannot hold,
is refused as the job's error before any call (``access_plan.app_problem``): fail closed, the app already in
Cloudflare (if any) stays as it is.

The observed copy of the app (as Cloudflare answered our last write) is kept per target; a job whose
desired app (with inline policies) matches it costs no call. A target with no observed copy is most likely new, so
its app is created at once: Cloudflare refuses a second application on a domain (409, code 11010
``access.api.error.application_already_exists``), so the create can never shadow an app that is already there.
Otherwise, and after such a refusal, the app is looked up by domain: a foreign app (without our tag) is a
conflict and is never touched; ours is replaced (``PUT``) when it differs; a missing one is created.
``app=None`` deletes our app. Access groups become account-level reusable policies named
``flareport group <id>``, created or updated (listed first, by name) as their definition changes and linked to the
app in order; an app linking them is therefore always read (its policies' ids are needed to compare it).

The tag is created once per process, before the first app write: concurrent jobs of a fresh worker wait
on one lock instead of each sending its own ``POST /access/tags``, and a refused create (whatever its status:
Cloudflare's answer to a duplicate is a 409, a 400 has been seen too) is checked by reading the tag: one that
already exists (another replica, an earlier run, a restart) counts as created.

Lists are read 50 per page (``ACCESS_PER_PAGE``): Cloudflare's maximum for Access lists is not documented where
we could confirm it, and 50 is the smallest maximum its v4 lists use.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DesiredAccessApp, SyncAccessApp
from flareport_common.messages.cfresults import CfError, CfNote
from flareport_dns_worker.access_plan import (
    app_body,
    app_domain,
    app_matches,
    app_problem,
    dockflare_app,
    foreign_app_conflict,
    group_policy_name,
    is_ours,
    policy_matches,
    reusable_policy_body,
    unique_refs,
)
from flareport_dns_worker.cfclient import CfApiError, CloudflareApi
from flareport_dns_worker.metrics import ADOPTED, APP_CREATE_REFUSED, CONFLICTS
from flareport_dns_worker.outcome import Outcome
from flareport_dns_worker.tunnels import JobFailed, api_error

ACCESS = "/accounts/{account_id}/access"
# Cloudflare's answer to a create on a domain that has an app: 409, code 11010.
APP_EXISTS_STATUS = 409
APP_EXISTS_CODE = 11010
ACCESS_PER_PAGE = 50


class AccessSync:
    def __init__(
        self, api: CloudflareApi, redis: aioredis.Redis, keys: Keys, *, tag: str, adopt_dockflare: bool = False
    ) -> None:
        self._api = api
        self._adopt_dockflare = adopt_dockflare
        self._redis = redis
        self._keys = keys
        self._tag = tag
        self._tag_ready = False
        self._tag_lock = asyncio.Lock()

    async def sync(self, job: SyncAccessApp, *, fresh: bool = False) -> Outcome:
        key = self._keys.target_observed(job.target)
        cached = await self._redis.get(key)
        desired = job.app
        if desired is not None:
            problem = app_problem(desired)
            if problem is not None:
                raise JobFailed(CfError(message=problem, hostname=job.hostname, path=job.path, kind="invalid"))
        # Apps linking reusable policies need the policies' ids (and their content checked), hence a read; apps
        # with inline policies compare offline.
        offline = desired is not None and cached is not None and not fresh and not desired.reusable
        if offline and desired is not None and app_matches(json.loads(cached or "{}"), app_body(desired, self._tag)):
            return Outcome()
        try:
            outcome = Outcome()
            if desired is not None and cached is None and not fresh and await self._create(desired, key, outcome):
                return outcome
            return await self._sync(job, desired, key, outcome)
        except CfApiError as error:
            raise JobFailed(api_error(error, hostname=job.hostname, path=job.path)) from error

    async def _create(self, desired: DesiredAccessApp, key: str, outcome: Outcome) -> bool:
        """Create the app of a target never written before; False when its domain already has an app."""
        policy_ids = await self._reusable_policies(desired, outcome)
        await self._ensure_tag(outcome)
        try:
            answer = await self._api.request("POST", ACCESS + "/apps", body=app_body(desired, self._tag, policy_ids))
        except CfApiError as error:
            if _app_exists(error):
                APP_CREATE_REFUSED.inc()
                return False  # ours from a lost cache, or foreign: the lookup decides
            raise
        outcome.writes += 1
        await self._redis.set(key, json.dumps(answer.get("result") or {}))
        return True

    async def _sync(self, job: SyncAccessApp, desired: DesiredAccessApp | None, key: str, outcome: Outcome) -> Outcome:
        domain = app_domain(job.hostname, job.path)
        found = await self._api.list_all(
            ACCESS + "/apps", per_page=ACCESS_PER_PAGE, params={"domain": domain, "exact": "true"}
        )
        current = next((a for a in found if str(a.get("domain", "")).lower() == domain.lower()), None)
        adopting = (
            current is not None
            and desired is not None
            and not is_ours(current, self._tag)
            and self._adopt_dockflare
            and dockflare_app(current, desired)
        )
        if current is not None and not is_ours(current, self._tag) and not adopting:
            CONFLICTS.labels("access").inc()
            outcome.errors.append(foreign_app_conflict(job.hostname, job.path, current, self._tag))
            return outcome
        if desired is None:
            if current is not None:
                outcome.writes += 1
                try:
                    await self._api.request("DELETE", ACCESS + "/apps/{app_id}", app_id=str(current["id"]))
                except CfApiError as error:
                    if error.status != 404:  # gone already (an earlier attempt got through): that is the goal
                        raise
            await self._redis.delete(key)
            return outcome
        wanted = app_body(desired, self._tag, await self._reusable_policies(desired, outcome))
        if current is not None and app_matches(current, wanted) and not adopting:
            await self._redis.set(key, json.dumps(current))
            return outcome
        await self._ensure_tag(outcome)
        outcome.writes += 1
        if current is None:
            try:
                answer = await self._api.request("POST", ACCESS + "/apps", body=wanted)
            except CfApiError as error:
                if not _app_exists(error):
                    raise
                # Cloudflare has an app on this domain that the lookup by domain does not show (another path, a
                # zone-level app...): a conflict to report, not a create to repeat.
                outcome.writes -= 1
                CONFLICTS.labels("access").inc()
                outcome.errors.append(
                    CfError(
                        code=error.code,
                        message=(
                            f"an Access application already exists for {domain} but the lookup by domain does not "
                            f"show it ({error.message}); it is left alone"
                        ),
                        hostname=job.hostname,
                        path=job.path,
                        kind="conflict",
                    )
                )
                return outcome
        else:
            answer = await self._api.request("PUT", ACCESS + "/apps/{app_id}", body=wanted, app_id=str(current["id"]))
            if adopting:
                # Same app id, our tag and policies now: the hostname is never without an app in between.
                ADOPTED.labels("access").inc()
                outcome.notes.append(
                    CfNote(
                        hostname=job.hostname,
                        path=job.path,
                        message=f"Access application {current.get('name')!r} made by DockFlare adopted in place",
                    )
                )
        await self._redis.set(key, json.dumps(answer.get("result") or {}))
        return outcome

    async def _ensure_tag(self, outcome: Outcome) -> None:
        if self._tag_ready:
            return
        async with self._tag_lock:  # single flight: the jobs that waited find it ready
            if self._tag_ready:
                return
            try:
                outcome.writes += 1
                await self._api.request("POST", ACCESS + "/tags", body={"name": self._tag})
            except CfApiError as refused:
                # Most likely it exists already (409, or 400 on some answers); rather than trusting the status or
                # the wording of the refusal, look.
                try:
                    await self._api.request("GET", ACCESS + "/tags/{tag_name}", tag_name=self._tag)
                except CfApiError:
                    raise refused from None
            self._tag_ready = True

    async def _reusable_policies(self, desired: DesiredAccessApp, outcome: Outcome) -> list[str]:
        """The ids of the app's reusable policies, in order: each found by its name (``flareport group <id>``) and
        updated when its content differs, or created. No call for an app with inline policies."""
        refs = unique_refs(desired)
        if not refs:
            return []
        policies = await self._api.list_all(ACCESS + "/policies", per_page=ACCESS_PER_PAGE)
        existing = {str(p.get("name")): p for p in policies}
        ids: list[str] = []
        for ref in refs:
            body = reusable_policy_body(ref)
            policy: dict[str, Any] | None = existing.get(group_policy_name(ref.group_id))
            if policy is None:
                outcome.writes += 1
                policy = (await self._api.request("POST", ACCESS + "/policies", body=body)).get("result") or {}
            elif not policy_matches(policy, body):
                outcome.writes += 1
                await self._api.request("PUT", ACCESS + "/policies/{policy_id}", body=body, policy_id=str(policy["id"]))
            ids.append(str(policy["id"]))
        return ids


def _app_exists(error: CfApiError) -> bool:
    """Cloudflare refused a create because an application already has the domain."""
    return error.status == APP_EXISTS_STATUS or error.code == APP_EXISTS_CODE
