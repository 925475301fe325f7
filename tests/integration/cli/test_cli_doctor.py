"""``flareport doctor`` as its own process against a real emulator process: the token verified, one read per
permission, the zones listed, exit 0/1 by the required checks, optional ones as warnings, ``--json``, and the token
never printed.

One emulator serves the module; each test registers its own token (``POST /__emulator/tokens``) with the status,
owner and permissions Cloudflare would attach to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from flareport_cli.localredis import LocalRedis

ACCOUNT = "0123456789abcdef0123456789abcdef"
ZONE = "fedcba9876543210fedcba9876543210"
OTHER_ZONE = "aaaabbbbccccddddeeeeffff00001111"
EVERY_PERMISSION = [
    "Zone > Zone > Read",
    "Zone > DNS > Edit",
    "Account > Cloudflare Tunnel > Edit",
    "Account > Access: Apps and Policies > Edit",
    "Account > Access: Organizations, Identity Providers, and Groups > Read",
    "Account > Account Settings > Read",
]
DOCKFLARE_TUNNEL = "d0cf1a4e-0000-4000-8000-000000000001"
OTHER_TUNNEL = "d0cf1a4e-0000-4000-8000-000000000002"


def cname(name: str, tunnel: str, **more: Any) -> dict[str, Any]:
    return {"zone_id": ZONE, "name": name, "type": "CNAME", "content": f"{tunnel}.cfargotunnel.com", **more}


SEED = {
    "accounts": [{"id": ACCOUNT, "name": "doctor"}],
    "zones": [
        {"id": ZONE, "name": "example.test", "account_id": ACCOUNT},
        {"id": OTHER_ZONE, "name": "other.test", "account_id": ACCOUNT},
    ],
    # What DockFlare leaves: its remotely managed tunnel, proxied CNAMEs without comments, untagged apps.
    "tunnels": [
        {"id": DOCKFLARE_TUNNEL, "name": "dockflare-home", "config_src": "cloudflare"},
        {"id": OTHER_TUNNEL, "name": "hand-made", "config_src": "local"},
    ],
    "dns_records": [
        cname("app.example.test", DOCKFLARE_TUNNEL, proxied=True),
        cname("wiki.example.test", DOCKFLARE_TUNNEL, proxied=True),
        cname("noted.example.test", DOCKFLARE_TUNNEL, proxied=True, comment="set up by hand, keep"),
        cname("grey.example.test", DOCKFLARE_TUNNEL, proxied=False),
        cname("elsewhere.example.test", OTHER_TUNNEL, proxied=True),
    ],
    "access_apps": [
        {"domain": "app.example.test", "type": "self_hosted", "name": "DockFlare-app.example.test"},
        {"domain": "elsewhere.example.test", "type": "self_hosted", "name": "DockFlare-elsewhere.example.test"},
    ],
}


@dataclass(frozen=True)
class Emulator:
    root: str
    redis_url: str

    @property
    def base_url(self) -> str:
        return self.root + "/client/v4"

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.root + path, data=data, method=method)  # noqa: S310 - loopback
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return json.loads(response.read())

    def token(self, token: str, **policy: Any) -> str:
        self.control("POST", "/__emulator/tokens", {"token": token, **policy})
        return token


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory, redis_server: LocalRedis) -> Iterator[Emulator]:
    seed = tmp_path_factory.mktemp("doctor") / "seed.json"
    seed.write_text(json.dumps(SEED))
    process = subprocess.Popen(
        [sys.executable, "-m", "flareport_cfemu", "--port", "0", "--seed", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the socket is bound
        assert "listening on" in line, line
        yield Emulator(line.split("listening on ", 1)[1].strip().removesuffix("/client/v4"), redis_server.url)
    finally:
        process.terminate()
        process.wait(timeout=15)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def row(self, check: str) -> list[str]:
        for line in self.out.splitlines():
            cells = [c.strip() for c in line.split("  ") if c.strip()]
            if cells and cells[0] == check:
                return cells
        raise AssertionError(f"no row {check!r} in:\n{self.out}{self.err}")


def doctor(emulator: Emulator, token: str, *args: str, **env: str) -> Run:
    """``flareport doctor`` in its own process, configured only by the dns-worker's environment."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLOUDFLARE_", "CF_", "FLAREPORT_", "REDIS_"))
    }
    environ.update(
        {
            "CLOUDFLARE_API_TOKEN": token,
            "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
            "CLOUDFLARE_API_BASE_URL": emulator.base_url,
            "CLOUDFLARE_MAX_CALL_ATTEMPTS": "1",
            "REDIS_URL": emulator.redis_url,
            **env,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "flareport_cli", "doctor", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    assert token not in run.out and token not in run.err, "the token was printed"
    return run


def test_every_permission_passes_and_lists_the_zones(emulator: Emulator) -> None:
    run = doctor(emulator, emulator.token("tok-all-7f3a", permissions=EVERY_PERMISSION))
    assert run.code == 0, run.out + run.err
    for check in ("token", "zones", "dns", "tunnels", "access apps", "access policies", "redis"):
        assert run.row(check)[1:3] == ["ok", "required"], run.row(check)
    assert run.row("identity providers")[1:3] == ["ok", "optional"]
    assert run.row("account members")[1:3] == ["ok", "optional"]
    assert run.row("dns")[3] == "Zone > DNS > Edit"
    assert "Edit cannot be checked without writing" in run.row("dns")[4]
    assert run.row("example.test")[1:] == [ZONE, "active"]
    assert run.row("other.test")[1:] == [OTHER_ZONE, "active"]
    assert "warning:" not in run.out
    assert run.out.rstrip().endswith("OK: every required check passed")


def test_a_token_without_dns_permission_fails_naming_it(emulator: Emulator) -> None:
    without_dns = [p for p in EVERY_PERMISSION if not p.startswith("Zone > DNS")]
    run = doctor(emulator, emulator.token("tok-nodns-81c2", permissions=without_dns))
    assert run.code == 1, run.out + run.err
    dns = run.row("dns")
    assert dns[1:4] == ["missing", "required", "Zone > DNS > Edit"]
    assert "example.test, other.test" in dns[4] and "403 [10000]" in dns[4]
    assert run.row("zones")[1] == "ok" and run.row("tunnels")[1] == "ok"
    assert "FAILED: 1 required check(s) did not pass; grant the token: Zone > DNS > Edit" in run.out


def test_a_refusal_injected_on_one_route_names_its_permission(emulator: Emulator) -> None:
    rule = {"endpoint": "GET /accounts/{account_id}/access/apps", "sequence": [403], "times": 1}
    emulator.control("POST", "/__emulator/faults", {**rule, "error_code": 9109, "error_message": "Unauthorized"})
    try:
        run = doctor(emulator, emulator.token("tok-fault-55d0"))
    finally:
        emulator.control("DELETE", "/__emulator/faults")
    assert run.code == 1
    assert run.row("access apps")[1:4] == ["missing", "required", "Account > Access: Apps and Policies > Edit"]
    assert run.row("access policies")[1] == "ok"


def test_optional_permissions_missing_are_warnings(emulator: Emulator) -> None:
    required_only = [p for p in EVERY_PERMISSION if "Account Settings" not in p and "Identity Providers" not in p]
    run = doctor(emulator, emulator.token("tok-opt-2b9e", permissions=required_only))
    assert run.code == 0, run.out + run.err
    assert run.row("account members")[1:4] == ["missing", "optional", "Account > Account Settings > Read"]
    assert run.row("identity providers")[1:3] == ["missing", "optional"]
    assert "warning: account members: missing" in run.out
    assert "OK: every required check passed (2 warning(s))" in run.out

    # With the owner's email configured, the members list is not needed and not read.
    run = doctor(emulator, "tok-opt-2b9e", FLAREPORT_ACCESS_OWNER_EMAIL="owner@example.test")
    assert run.code == 0
    assert run.row("account members")[1] == "skipped"
    assert "warning: account members" not in run.out


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"status": "disabled"}, "the user API token is disabled"),
        ({"expires_on": "2020-01-01T00:00:00Z"}, "the user API token is expired"),
        ({"owner": "account", "account_id": "f" * 32}, "Cloudflare does not accept the token"),
    ],
    ids=["disabled", "expired", "another-accounts-token"],
)
def test_an_inactive_or_invalid_token_fails(emulator: Emulator, policy: dict[str, Any], expected: str) -> None:
    token = emulator.token("tok-bad-" + policy.get("status", policy.get("owner", "exp")) + "-9d1e", **policy)
    run = doctor(emulator, token)
    assert run.code == 1, run.out + run.err
    assert run.row("token")[1:3] == ["failed", "required"]
    assert expected in run.out
    assert run.row("zones")[1] == "skipped"


def test_json_report_of_an_account_api_token(emulator: Emulator) -> None:
    token = emulator.token("tok-acct-3c7d", owner="account", account_id=ACCOUNT, expires_on="2999-01-01T00:00:00Z")
    run = doctor(emulator, token, "--json", CLOUDFLARE_ZONE_ID=ZONE)
    assert run.code == 0, run.out + run.err
    report = json.loads(run.out)
    assert set(report) == {
        "ok", "account_id", "api_base_url", "token", "zones", "checks", "warnings", "takeovers", "rate_limit"
    }  # fmt: skip
    assert report["ok"] is True and report["account_id"] == ACCOUNT and report["warnings"] == []
    assert report["token"]["kind"] == "account" and report["token"]["status"] == "active"
    assert report["token"]["expires_on"] == "2999-01-01T00:00:00Z"
    assert {z["name"] for z in report["zones"]} == {"example.test", "other.test"}
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks["dns"]) == {"name", "required", "result", "permission", "endpoint", "detail"}
    assert checks["token"]["endpoint"] == "GET /accounts/{account_id}/tokens/verify"
    assert checks["dns"] == {
        **checks["dns"],
        "required": True,
        "result": "ok",
        "permission": "Zone > DNS > Edit",
        "endpoint": "GET /zones/{zone_id}/dns_records",
    }


def test_a_default_zone_the_token_cannot_see_fails(emulator: Emulator) -> None:
    run = doctor(emulator, emulator.token("tok-zone-6a4f"), "--json", CLOUDFLARE_ZONE_ID="9" * 32)
    assert run.code == 1
    zones = next(c for c in json.loads(run.out)["checks"] if c["name"] == "zones")
    assert zones["result"] == "missing" and "CLOUDFLARE_ZONE_ID" in zones["detail"]


def test_configuration_is_read_as_the_dns_worker_reads_it(emulator: Emulator) -> None:
    run = doctor(emulator, "tok-conf-0e8b", CLOUDFLARE_MAX_CALL_ATTEMPTS="many")
    assert run.code == 2
    assert "CLOUDFLARE_MAX_CALL_ATTEMPTS" in run.err


def test_redis_out_of_reach_fails_the_doctor(emulator: Emulator) -> None:
    token = emulator.token("tok-redis-4d2c", permissions=EVERY_PERMISSION)
    run = doctor(emulator, token, REDIS_URL="redis://127.0.0.1:1")
    assert run.code == 1, run.out + run.err
    assert run.row("redis")[1:3] == ["failed", "required"] and "cannot reach Redis" in run.row("redis")[4]


def test_a_dockflare_tunnel_is_checked_and_what_points_to_it_forecast(emulator: Emulator) -> None:
    token = emulator.token("tok-tunnel-8e1f", permissions=EVERY_PERMISSION)
    run = doctor(emulator, token, "--tunnel", "dockflare-home")
    assert run.code == 0, run.out + run.err
    assert run.row("tunnel dockflare-home")[1] == "ok"
    assert "2 adopted in place, 0 already Flareport's, 2 conflict(s); 1 DockFlare Access app(s)" in run.out
    assert run.row("app.example.test")[1] == "adopted in place (ownership comment added)"
    assert run.row("noted.example.test")[1].startswith("conflict, left untouched: has a comment")
    assert run.row("grey.example.test")[1] == "conflict, left untouched: not proxied"
    assert "elsewhere.example.test" not in run.out, "a record to another tunnel is no business of this one"
    assert "set FLAREPORT_ADOPT_DOCKFLARE_ACCESS=true" in run.out

    by_id = doctor(emulator, token, "--json", "--tunnel", DOCKFLARE_TUNNEL)
    seen = json.loads(by_id.out)["takeovers"][DOCKFLARE_TUNNEL]
    assert seen["tunnel_id"] == DOCKFLARE_TUNNEL and seen["adopt_in_place"] == ["app.example.test", "wiki.example.test"]
    assert seen["dockflare_access_apps"] == ["app.example.test"]

    opted_in = doctor(emulator, token, "--tunnel", "dockflare-home", FLAREPORT_ADOPT_DOCKFLARE_ACCESS="true")
    assert "FLAREPORT_ADOPT_DOCKFLARE_ACCESS" not in opted_in.out


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("no-such-tunnel", "no such tunnel in the account"), ("hand-made", "is locally managed")],
)
def test_a_missing_or_locally_managed_tunnel_fails(emulator: Emulator, ref: str, expected: str) -> None:
    run = doctor(emulator, emulator.token(f"tok-{ref}-5a0b", permissions=EVERY_PERMISSION), "--tunnel", ref)
    assert run.code == 1, run.out + run.err
    assert run.row(f"tunnel {ref}")[1] == "failed" and expected in run.out


def test_the_report_says_what_cloudflare_counts_as_left_of_the_budget(emulator: Emulator) -> None:
    run = doctor(emulator, emulator.token("tok-rate-3c11", permissions=EVERY_PERMISSION))
    assert run.code == 0, run.out + run.err
    line = next(line for line in run.out.splitlines() if line.startswith("Cloudflare's rate limit:"))
    left = int(line.split(": ", 1)[1].split(" ", 1)[0])
    assert 1_150 < left < 1_200 and "of 1200 requests left" in line, line
    assert "warning: Cloudflare's rate limit" not in run.out


def test_a_budget_mostly_spent_elsewhere_is_a_warning(emulator: Emulator) -> None:
    # Another tool (here: this test) spent most of the window's budget with the same token.
    before = emulator.control("GET", "/__emulator/config")["result"]["rate_limit"]
    emulator.control("POST", "/__emulator/config", {"rate_limit": 100})
    try:
        token = emulator.token("tok-spent-7d20", permissions=EVERY_PERMISSION)
        for _ in range(85):
            request = urllib.request.Request(  # noqa: S310 - loopback
                f"{emulator.base_url}/zones", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback
                pass
        run = doctor(emulator, token, "--json")
    finally:
        emulator.control("POST", "/__emulator/config", {"rate_limit": before})
    assert run.code == 0, run.out + run.err
    report = json.loads(run.out)
    assert report["rate_limit"]["quota"] == 100 and report["rate_limit"]["remaining"] < 15, report["rate_limit"]
    assert any(w.startswith("Cloudflare's rate limit: only") for w in report["warnings"]), report["warnings"]
