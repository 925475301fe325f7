"""The preflight: is the API token the dns-worker was given good for what Flareport does with it?

One read per permission Flareport needs, so that a missing permission is named before a job fails on it:

==========================  ========================================================  ==========================
check                       call                                                      permission (Cloudflare's)
==========================  ========================================================  ==========================
token                       ``GET /user/tokens/verify``; on 401 (an account API        -
                            token) ``GET /accounts/{id}/tokens/verify``
zones                       ``GET /zones?account.id=`` (every page)                    Zone > Zone > Read
dns                         ``GET /zones/{id}/dns_records`` in each visible zone       Zone > DNS > Edit
                            (the default zone first, at most ``MAX_DNS_ZONES``)
tunnels                     ``GET /accounts/{id}/cfd_tunnel``                          Cloudflare Tunnel > Edit
access apps / policies      ``GET /accounts/{id}/access/apps`` and ``.../policies``    Access: Apps and Policies > Edit
identity providers (opt.)   ``GET /accounts/{id}/access/identity_providers``           Access: Organizations, ... > Read
account members (opt.)      ``GET /accounts/{id}/members`` (not when                   Account Settings > Read
                            ``FLAREPORT_ACCESS_OWNER_EMAIL`` is set)
==========================  ========================================================  ==========================

Only reads are sent: an Edit permission cannot be told from a Read one without writing (Cloudflare has no endpoint
that lists a token's own permissions to the token itself unless it may read API tokens), so the report names the
Edit permission to grant and says that only reading was checked. Optional checks cover what only
``access.policy=authenticate`` needs; their failures are warnings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from flareport_dns_worker.cfclient import CfApiError, CfTransientError, CloudflareApi, permission_for

log = structlog.get_logger("flareport.dns_worker.preflight")

Json = dict[str, Any]
OK, MISSING, FAILED, SKIPPED = "ok", "missing", "failed", "skipped"
MAX_DNS_ZONES = 25  # zones whose DNS list is read; an account with hundreds of zones is sampled, not swept
EXPIRY_WARNING = dt.timedelta(days=14)
USER_VERIFY = "/user/tokens/verify"
ACCOUNT_VERIFY = "/accounts/{account_id}/tokens/verify"
ZONES = "/zones"
DNS_RECORDS = "/zones/{zone_id}/dns_records"
TUNNELS = "/accounts/{account_id}/cfd_tunnel"
ACCESS_APPS = "/accounts/{account_id}/access/apps"
ACCESS_POLICIES = "/accounts/{account_id}/access/policies"
IDENTITY_PROVIDERS = "/accounts/{account_id}/access/identity_providers"
MEMBERS = "/accounts/{account_id}/members"
NOT_WRITTEN = "Edit cannot be checked without writing"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    required: bool
    result: str  # ok, missing (the token lacks the permission), failed (anything else), skipped
    permission: str  # the permission to grant, by Cloudflare's name ("" for the token itself)
    endpoint: str
    detail: str


@dataclass(slots=True)
class Report:
    account_id: str
    api_base_url: str
    checks: list[Check] = field(default_factory=list)
    zones: list[Json] = field(default_factory=list)
    token: Json = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Per tunnel named with ``flareport doctor --tunnel``: what the first syncs will adopt (takeover.py).
    takeovers: dict[str, Json] = field(default_factory=dict)
    # Cloudflare's standing as its ``Ratelimit`` headers reported it: remaining, reset_seconds, quota.
    rate_limit: Json = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.result == OK for check in self.checks if check.required)

    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.required and check.result != OK]

    def to_json(self) -> Json:
        return {
            "ok": self.ok,
            "account_id": self.account_id,
            "api_base_url": self.api_base_url,
            "token": self.token,
            "zones": self.zones,
            "checks": [asdict(check) for check in self.checks],
            "warnings": self.warnings,
            "takeovers": self.takeovers,
            "rate_limit": self.rate_limit or None,
        }


def permission(template: str) -> str:
    return permission_for("GET " + template)


def _refusal(error: CfApiError) -> tuple[str, str]:
    """(result, detail) of a refused read."""
    said = f"Cloudflare answered {error.status} [{error.code}] {error.message}"
    if error.kind == "permission":
        return MISSING, f"the token lacks this permission ({said})"
    if error.kind == "not_enabled":
        return FAILED, f"Cloudflare Zero Trust (Access) is not set up on this account ({said})"
    return FAILED, said


class Preflight:
    def __init__(
        self,
        api: CloudflareApi,
        *,
        account_id: str,
        api_base_url: str,
        default_zone_id: str | None = None,
        owner_email_set: bool = False,
        max_dns_zones: int = MAX_DNS_ZONES,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.api = api
        self.default_zone_id = default_zone_id
        self.owner_email_set = owner_email_set
        self.max_dns_zones = max_dns_zones
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.report = Report(account_id=account_id, api_base_url=api_base_url)

    def add(
        self, name: str, required: bool, result: str, template: str, detail: str, *, perm: str | None = None
    ) -> None:
        given = permission(template) if perm is None else perm
        self.report.checks.append(Check(name, required, result, given, "GET " + template, detail))
        if not required and result not in (OK, SKIPPED):
            self.report.warnings.append(f"{name}: {result}: {detail}" + (f"; grant {given!r}" if given else ""))

    async def run(self) -> Report:
        if await self.token():
            await self.zones()
            await self.dns()
            await self.read("tunnels", TUNNELS, {"per_page": 1, "is_deleted": "false"}, f"readable; {NOT_WRITTEN}")
            await self.read("access apps", ACCESS_APPS, {"per_page": 1}, f"readable; {NOT_WRITTEN}")
            await self.read("access policies", ACCESS_POLICIES, {"per_page": 1}, f"readable; {NOT_WRITTEN}")
            await self.identity_providers()
            await self.members()
        else:
            for name, required, template in (
                ("zones", True, ZONES),
                ("dns", True, DNS_RECORDS),
                ("tunnels", True, TUNNELS),
                ("access apps", True, ACCESS_APPS),
                ("access policies", True, ACCESS_POLICIES),
                ("identity providers", False, IDENTITY_PROVIDERS),
                ("account members", False, MEMBERS),
            ):
                self.report.checks.append(
                    Check(name, required, SKIPPED, permission(template), "GET " + template, "not run: the token failed")
                )
        return self.report

    async def _call(self, template: str, params: Json | None = None, **ids: str) -> Json:
        return await self.api.request("GET", template, params=params, **ids)

    async def _checked(
        self, name: str, required: bool, template: str, call: Callable[[], Awaitable[str]], *, perm: str | None = None
    ) -> bool:
        """Run one read; record its result. True when it passed."""
        try:
            detail = await call()
        except CfApiError as error:
            result, detail = _refusal(error)
            self.add(name, required, result, template, detail, perm=perm)
            return False
        except CfTransientError as error:
            self.add(name, required, FAILED, template, f"Cloudflare did not answer: {error}", perm=perm)
            return False
        self.add(name, required, OK, template, detail, perm=perm)
        return True

    # --- token ----------------------------------------------------------------------------------

    async def token(self) -> bool:
        kind = "user"
        try:
            try:
                envelope = await self._call(USER_VERIFY)
            except CfApiError as error:
                if error.status != 401:
                    raise
                kind = "account"  # Cloudflare answers 401 to an account API token at the user endpoint
                envelope = await self._call(ACCOUNT_VERIFY)
        except CfApiError as error:
            said = f"Cloudflare answered {error.status} [{error.code}] {error.message}"
            detail = (
                f"Cloudflare does not accept the token, as a user token nor as an API token of account "
                f"{self.report.account_id} ({said}); check CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID"
            )
            self.add("token", True, FAILED, USER_VERIFY, detail, perm="")
            return False
        except CfTransientError as error:
            self.add("token", True, FAILED, USER_VERIFY, f"Cloudflare did not answer: {error}", perm="")
            return False
        result = envelope.get("result") or {}
        status = str(result.get("status") or "unknown")
        expires_on = result.get("expires_on")
        not_before = result.get("not_before")
        self.report.token = {
            "kind": kind,
            "id": result.get("id"),
            "status": status,
            "expires_on": expires_on,
            "not_before": not_before,
        }
        template = USER_VERIFY if kind == "user" else ACCOUNT_VERIFY
        what = "user API token" if kind == "user" else f"account API token of {self.report.account_id}"
        now = self.now()
        if status != "active":
            self.add("token", True, FAILED, template, f"the {what} is {status}; create or re-enable a token", perm="")
            return False
        starts = _parse_time(not_before)
        if starts is not None and starts > now:
            self.add("token", True, FAILED, template, f"the {what} is not valid before {not_before}", perm="")
            return False
        detail = f"active {what}"
        ends = _parse_time(expires_on)
        if ends is None:
            detail += ", no expiry"
        else:
            detail += f", expires {expires_on}"
            if ends - now < EXPIRY_WARNING:
                days = max(0, (ends - now).days)
                self.report.warnings.append(f"token: expires {expires_on} (in {days} days); roll it before then")
        self.add("token", True, OK, template, detail, perm="")
        return True

    # --- zones and DNS ----------------------------------------------------------------------------

    async def zones(self) -> None:
        async def call() -> str:
            zones = await self.api.list_all(ZONES, per_page=50, params={"account.id": self.report.account_id})
            self.report.zones = [
                {"id": z.get("id"), "name": z.get("name"), "status": z.get("status")} for z in zones if z.get("id")
            ]
            return f"{len(self.report.zones)} zone(s) visible"

        if not await self._checked("zones", True, ZONES, call):
            return
        check = self.report.checks.pop()
        names = {z["id"]: z["name"] for z in self.report.zones}
        if not names:
            detail = (
                f"the token sees no zone of account {self.report.account_id}; grant Zone > Zone > Read and "
                "Zone > DNS > Edit on the zones Flareport publishes in"
            )
            self.report.checks.append(Check(check.name, True, MISSING, check.permission, check.endpoint, detail))
            return
        if self.default_zone_id and self.default_zone_id not in names:
            detail = f"CLOUDFLARE_ZONE_ID {self.default_zone_id} is not among the {len(names)} zone(s) the token sees"
            self.report.checks.append(Check(check.name, True, MISSING, check.permission, check.endpoint, detail))
            return
        self.report.checks.append(check)

    async def dns(self) -> None:
        zones = sorted(self.report.zones, key=lambda z: z["id"] != self.default_zone_id)
        if not zones:
            self.add("dns", True, SKIPPED, DNS_RECORDS, "no zone to read")
            return
        checked = zones[: self.max_dns_zones]
        refused: dict[str, list[str]] = {}  # detail -> zone names
        failed: dict[str, list[str]] = {}
        for zone in checked:
            try:
                await self._call(DNS_RECORDS, {"per_page": 5}, zone_id=str(zone["id"]))
            except CfApiError as error:
                result, detail = _refusal(error)
                (refused if result == MISSING else failed).setdefault(detail, []).append(str(zone["name"]))
            except CfTransientError as error:
                failed.setdefault(f"Cloudflare did not answer: {error}", []).append(str(zone["name"]))
        sampled = f" (the first {len(checked)} of {len(zones)})" if len(zones) > len(checked) else ""
        if refused:
            self.add("dns", True, MISSING, DNS_RECORDS, "refused in " + _by_zone(refused))
        elif failed:
            self.add("dns", True, FAILED, DNS_RECORDS, "failed in " + _by_zone(failed))
        else:
            self.add(
                "dns", True, OK, DNS_RECORDS, f"records readable in {len(checked)} zone(s){sampled}; {NOT_WRITTEN}"
            )

    # --- account reads --------------------------------------------------------------------------

    async def read(self, name: str, template: str, params: Json, detail: str, *, required: bool = True) -> None:
        async def call() -> str:
            await self._call(template, params)
            return detail

        await self._checked(name, required, template, call)

    async def identity_providers(self) -> None:
        async def call() -> str:
            envelope = await self._call(IDENTITY_PROVIDERS, {"per_page": 50})
            found = any(p.get("type") == "onetimepin" for p in envelope.get("result") or [])
            if not found:
                self.report.warnings.append(
                    "identity providers: no One-time PIN login method; access.policy=authenticate needs one "
                    "(Zero Trust > Settings > Authentication > Login methods)"
                )
            return "readable; One-time PIN login method " + ("found" if found else "not found")

        await self._checked("identity providers", False, IDENTITY_PROVIDERS, call)

    async def members(self) -> None:
        if self.owner_email_set:
            self.add("account members", False, SKIPPED, MEMBERS, "not needed: FLAREPORT_ACCESS_OWNER_EMAIL is set")
            return

        async def call() -> str:
            envelope = await self._call(MEMBERS, {"per_page": 5})
            return f"readable ({len(envelope.get('result') or [])} member(s) on the first page)"

        await self._checked("account members", False, MEMBERS, call)


async def log_preflight(preflight: Preflight) -> Report | None:
    """The dns-worker's start-up check: the same reads, logged as warnings (a check that did not pass) and one summary
    line; never raises and never blocks the worker (it runs beside the consumer)."""
    try:
        report = await preflight.run()
    except Exception as error:  # a preflight that breaks must not take the worker with it
        log.warning("preflight.error", error=str(error))
        return None
    for check in report.checks:
        if check.result not in (OK, SKIPPED):
            log.warning(
                "preflight.check",
                check=check.name,
                result=check.result,
                required=check.required,
                permission=check.permission or None,
                detail=check.detail,
            )
    for warning in report.warnings:
        log.warning("preflight.warning", warning=warning)
    failed = [check.name for check in report.failures()]
    if failed:
        log.warning("preflight.failed", failed=failed, hint="run `flareport doctor` for the table")
    else:
        log.info("preflight.ok", zones=len(report.zones), token=report.token.get("kind"))
    return report


def _by_zone(details: dict[str, list[str]]) -> str:
    return "; ".join(f"{', '.join(names)}: {detail}" for detail, names in details.items())


def _parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
