"""``flareport doctor``: the preflight (``preflight.py``) against Cloudflare, with the dns-worker's settings, plus
the Redis server and, with ``--tunnel``, the tunnels a migration reuses (``doctor_checks.py``).

Reads exactly the environment ``flareport dns-worker`` reads (a bad value stops it the same way, exit 2), runs the
reads, prints a table (or ``--json``) and exits 0 when every required check passed, 1 otherwise; optional checks
that fail are warnings. The token is never printed: every line goes through a filter that masks it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from flareport_common.logs import setup_logging
from flareport_common.settings import DnsWorkerSettings, load_dns_worker, load_or_exit, secret_values
from flareport_dns_worker.cfclient import CloudflareApi
from flareport_dns_worker.doctor_checks import check_redis, check_tunnel
from flareport_dns_worker.preflight import OK, Preflight, Report
from flareport_dns_worker.ratelimit import Admission
from flareport_dns_worker.ratelimit_header import Standing
from flareport_dns_worker.service import make_sdk


class LocalLimiter:
    """The rate limit of a one-shot command: no shared bucket (a dozen reads), but a 429 still waits. It keeps the
    standing Cloudflare's answers reported (the fewest requests left), for the report."""

    def __init__(self) -> None:
        self.standing: Standing | None = None

    async def acquire(self) -> Admission:
        return Admission("", 0)

    async def ended(self, admission: Admission, standing: Standing | None = None) -> None:
        if standing is not None and (self.standing is None or standing.remaining <= self.standing.remaining):
            self.standing = standing

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds, 30.0))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flareport doctor",
        description="Check the Cloudflare API token and account the dns-worker is configured with "
        "(CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_BASE_URL, CLOUDFLARE_ZONE_ID, ...): "
        "one read per permission Flareport needs.",
        epilog="Exit codes: 0 every required check passed, 1 a required check failed, 2 invalid configuration.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument(
        "--tunnel",
        action="append",
        default=[],
        metavar="NAME_OR_ID",
        help="a tunnel agents will be enrolled on (e.g. DockFlare's): check it and forecast which of the DNS records "
        "and Access apps pointing to it Flareport adopts in place and which stay conflicts (repeatable)",
    )
    return parser.parse_args(list(argv))


async def preflight(settings: DnsWorkerSettings, tunnels: Sequence[str] = ()) -> Report:
    sdk = make_sdk(settings)
    limiter = LocalLimiter()
    try:
        api = CloudflareApi(
            sdk,
            limiter,
            account_id=settings.cloudflare.account_id,
            max_attempts=min(3, settings.max_call_attempts),
        )
        report = await Preflight(
            api,
            account_id=settings.cloudflare.account_id,
            api_base_url=settings.cloudflare.api_base_url,
            default_zone_id=settings.cloudflare.default_zone_id,
            owner_email_set=settings.access_owner_email is not None,
        ).run()
        await check_redis(settings, report)
        for ref in tunnels:
            await check_tunnel(api, settings, ref, report)
        _rate_limit(report, limiter.standing, settings.cloudflare.rate_limit_requests)
        return report
    finally:
        await sdk.close()


# Below this share of its quota left, the report warns: the dns-worker is about to wait for Cloudflare's reset.
LOW_STANDING = 0.2


def _rate_limit(report: Report, standing: Standing | None, configured: int) -> None:
    """What Cloudflare's ``Ratelimit`` headers said of the budget, counted for the whole user (the dashboard and
    every tool on the account): why a dns-worker may be waiting although its own calls are few."""
    if standing is None:
        return
    quota = standing.quota or configured
    report.rate_limit = {"remaining": standing.remaining, "reset_seconds": standing.reset_seconds, "quota": quota}
    if standing.remaining < quota * LOW_STANDING:
        report.warnings.append(
            f"Cloudflare's rate limit: only {standing.remaining} of {quota} requests left until its window resets in "
            f"{standing.reset_seconds} s; it counts every consumer of the account's budget (the dashboard, other "
            "tools), and the dns-worker waits for the reset rather than overrun it"
        )


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip() for row in rows
    ]


def render(report: Report) -> str:
    lines = [f"Cloudflare account {report.account_id} at {report.api_base_url}", ""]
    rows = [["CHECK", "RESULT", "NEEDED", "PERMISSION", "DETAIL"]]
    for check in report.checks:
        needed = "required" if check.required else "optional"
        rows.append([check.name, check.result, needed, check.permission or "-", check.detail])
    lines += _table(rows)
    lines.append("")
    if report.rate_limit:
        limit = report.rate_limit
        lines += [
            f"Cloudflare's rate limit: {limit['remaining']} of {limit['quota']} requests left, the window resets in "
            f"{limit['reset_seconds']} s (counted for every consumer of the account's budget)",
            "",
        ]
    if report.zones:
        lines.append(f"Zones the token sees ({len(report.zones)}):")
        lines += ["  " + line for line in _table([["NAME", "ID", "STATUS"]] + [_zone_row(z) for z in report.zones])]
        lines.append("")
    for ref, seen in report.takeovers.items():
        lines.append(f"Tunnel {ref} ({seen['tunnel_id']}): what the first syncs do with what points to it")
        rows = [["HOSTNAME", "DNS"]]
        rows += [[host, "adopted in place (ownership comment added)"] for host in seen["adopt_in_place"]]
        rows += [[host, "already Flareport's"] for host in seen["already_ours"]]
        rows += [[host, f"conflict, left untouched: {why}"] for host, why in seen["conflicts"].items()]
        rows += [[domain, "DockFlare Access app"] for domain in seen["dockflare_access_apps"]]
        lines += ["  " + line for line in _table(rows)] if len(rows) > 1 else ["  nothing points to it"]
        lines.append("")
    lines += [f"warning: {warning}" for warning in report.warnings]
    failures = report.failures()
    if failures:
        grant = sorted({c.permission for c in failures if c.result == "missing" and c.permission})
        summary = f"FAILED: {len(failures)} required check(s) did not pass"
        lines.append(summary + (f"; grant the token: {', '.join(grant)}" if grant else ""))
    else:
        optional = [c for c in report.checks if not c.required and c.result not in (OK, "skipped")]
        lines.append("OK: every required check passed" + (f" ({len(optional)} warning(s))" if optional else ""))
    return "\n".join(lines)


def _zone_row(zone: dict[str, Any]) -> list[str]:
    return [str(zone.get("name") or "-"), str(zone.get("id") or "-"), str(zone.get("status") or "-")]


def _masked(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    settings = load_or_exit(load_dns_worker)
    # Retries and 429 waits are logged on stderr (warnings only), never mixed into the report.
    setup_logging("warning", settings.common.log_format, service="doctor", secrets=secret_values(settings))
    report = asyncio.run(preflight(settings, args.tunnel))
    text = json.dumps(report.to_json(), indent=2) if args.json else render(report)
    print(_masked(text, secret_values(settings)))
    sys.stdout.flush()
    return 0 if report.ok else 1
