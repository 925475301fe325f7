"""A DockFlare installation moves to Flareport with no DNS record deleted or re-created and no conflict for what
DockFlare made (docs/migrating-from-dockflare.md).

Cloudflare starts as DockFlare leaves it: a remotely managed tunnel with its ingress rules, proxied CNAMEs to it
without comments, a ``DockFlare-<host>`` Access app linking DockFlare's reusable policy, and records DockFlare
never made. Then the documented steps: ``flareport doctor --tunnel``, ``flareport import dockflare --apply`` with
DockFlare's state.json, the host's agent enrolled on DockFlare's tunnel, the same containers with the same
``dockflare.*`` labels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fptest.e2e_stack import ZONE, E2EStack
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

TUNNEL = "d0cf1a4e-5eed-4000-8000-00000000d0c1"
TARGET = f"{TUNNEL}.cfargotunnel.com"
APP, WIKI, NAS, GONE, NOTED = (f"{name}.{ZONE}" for name in ("app", "wiki", "nas", "gone", "noted"))
DNS_WRITES = ("POST /zones/{zone_id}/dns_records", "DELETE /zones/{zone_id}/dns_records/{dns_record_id}")


def dockflare_cloudflare() -> dict[str, Any]:
    """What DockFlare 3.1.2 leaves in Cloudflare for one host, plus records it never made."""
    cname = {"zone_name": ZONE, "type": "CNAME", "content": TARGET, "proxied": True, "ttl": 1}
    return {
        "tunnels": [
            {
                "id": TUNNEL,
                "name": "dockflare-home",
                "config_src": "cloudflare",
                "config": {
                    "ingress": [
                        {"hostname": APP, "service": "http://app:80"},
                        {"hostname": WIKI, "service": "http://wiki:80"},
                        {
                            "hostname": NAS,
                            "service": "https://192.168.1.10:5001",
                            "originRequest": {"noTLSVerify": True},
                        },
                        {"hostname": GONE, "service": "http://gone:80"},
                        {"service": "http_status:404"},
                    ]
                },
            }
        ],
        "dns_records": [
            *({**cname, "name": name} for name in (APP, WIKI, NAS, GONE)),
            {**cname, "name": NOTED, "comment": "set up by hand"},
            {"zone_name": ZONE, "name": f"mail.{ZONE}", "type": "A", "content": "192.0.2.25", "proxied": False},
            {"zone_name": ZONE, "name": f"legacy.{ZONE}", "type": "CNAME", "content": "elsewhere.example.net"},
        ],
        "access_policies": [
            {
                "id": "dockflare-policy-admins",
                "name": "DockFlare-AccessGroup-admins",
                "decision": "allow",
                "include": [{"email": {"email": "admin@example.com"}}],
            }
        ],
        "access_apps": [
            {
                "domain": WIKI,
                "type": "self_hosted",
                "name": f"DockFlare-{WIKI}",
                "policies": [{"id": "dockflare-policy-admins", "precedence": 1}],
            }
        ],
    }


def dockflare_state() -> dict[str, Any]:
    """DockFlare's state.json for the same host: its admins group, the manual rule of the NAS, the containers."""
    docker_rule = {"status": "active", "source": "docker", "tunnel_id": TUNNEL, "tunnel_name": "dockflare-home"}
    return {
        "managed_rules": {
            NAS: {
                "hostname": NAS,
                "path": None,
                "service": "https://192.168.1.10:5001",
                "status": "active",
                "source": "manual",
                "no_tls_verify": True,
                "tunnel_id": TUNNEL,
                "tunnel_name": "dockflare-home",
                "zone_name": ZONE,
            },
            APP: {**docker_rule, "hostname": APP, "service": "http://app:80", "container_id": "c0ffee000001"},
            WIKI: {**docker_rule, "hostname": WIKI, "service": "http://wiki:80", "container_id": "c0ffee000002"},
        },
        "access_groups": {
            "admins": {
                "id": "admins",
                "display_name": "Admins",
                "policies": [
                    {
                        "name": "Allow admins",
                        "decision": "allow",
                        "include": [{"email": {"email": "admin@example.com"}}],
                    }
                ],
            }
        },
        "agents": {},
    }


def flareport(stack: E2EStack, *argv: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FLAREPORT_", "MASTER_", "CLOUDFLARE_"))}
    environ.update({"FLAREPORT_URL": stack.api_url, "MASTER_API_KEY": stack.master_key})
    return subprocess.run(
        [sys.executable, "-m", "flareport_cli", *argv], env=environ, capture_output=True, text=True, timeout=60
    )


def doctor(stack: E2EStack) -> dict[str, Any]:
    """``flareport doctor --tunnel`` with the dns-worker's own environment (what an operator runs first)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FLAREPORT_", "CLOUDFLARE_", "REDIS_"))}
    environ.update(stack.env)
    done = subprocess.run(
        [sys.executable, "-m", "flareport_cli", "doctor", "--json", "--tunnel", "dockflare-home"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout)["takeovers"]["dockflare-home"])


def by_name(stack: E2EStack) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in stack.dns_records()}


def test_a_dockflare_host_moves_with_no_dns_record_deleted_or_recreated(
    stack_factory: StackFactory, tmp_path: Path
) -> None:
    stack = stack_factory(FLAREPORT_ADOPT_DOCKFLARE_ACCESS="true")
    stack.emu("POST", "/__emulator/seed", dockflare_cloudflare())
    records_before = by_name(stack)
    [dockflare_app] = stack.access_apps()
    policies_before = stack.cf_state()["access_policies"]

    # 1. The preflight says what will happen, before anything is written.
    forecast = doctor(stack)
    assert forecast["tunnel_id"] == TUNNEL
    assert forecast["adopt_in_place"] == sorted([APP, GONE, NAS, WIKI])
    assert list(forecast["conflicts"]) == [NOTED], "someone wrote a comment on it: not taken without being asked"
    assert forecast["dockflare_access_apps"] == [WIKI]

    # 2. DockFlare's state: the group and the manual rule (dry run first, then --apply).
    state = tmp_path / "state.json"
    state.write_text(json.dumps(dockflare_state()))
    dry = flareport(stack, "import", "dockflare", str(state))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"flareport doctor --tunnel {TUNNEL}" in dry.stdout and "would create" in dry.stdout
    applied = flareport(stack, "import", "dockflare", str(state), "--apply", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr

    # 3. The host's agent enrolled on DockFlare's tunnel; 4. the same containers, the same labels.
    stack.emu("DELETE", "/__emulator/requests")
    agent_id = stack.wait_new_agent(set())["agent_id"]
    stack.admin("POST", f"/api/v1/agents/{agent_id}/enroll", {"tunnel_id": TUNNEL})
    wait_for_sync(
        lambda: stack.agent(agent_id)["status"] == "active", timeout=60, interval=0.3, what="the agent active"
    )
    host = stack.hosts["host1"]
    for name, hostname, extra in (("app", APP, {}), ("wiki", WIKI, {"dockflare.access.group": "admins"})):
        labels = {"dockflare.enable": "true", "dockflare.hostname": hostname, "dockflare.service": f"http://{name}:80"}
        host.run(name, {**labels, **extra}, stack.image)
    stack.wait_rules_active({APP, WIKI, NAS})
    stack.wait_idle()

    # Every hostname active, none a conflict, each saying what it adopted.
    rules = {r["hostname"]: r for r in stack.rules()}
    assert {h: rules[h]["status"] for h in (APP, WIKI, NAS)} == dict.fromkeys((APP, WIKI, NAS), "active")
    assert all("dns" in rules[h].get("adopted", {}) for h in (APP, WIKI, NAS)), rules
    assert "DockFlare" in rules[WIKI]["adopted"]["access"]

    # Zero DNS records deleted or re-created: the same records, now marked; the others exactly as they were.
    after = by_name(stack)
    calls = stack.emu("GET", "/__emulator/requests?limit=0")["counters"]
    assert not [e for e in calls if e in DNS_WRITES], calls
    for name in (APP, WIKI, NAS):
        assert after[name]["id"] == records_before[name]["id"], f"{name} was re-created"
        assert after[name]["content"] == TARGET and after[name]["comment"].startswith("managed-by=flareport")
    for name in (GONE, f"mail.{ZONE}", f"legacy.{ZONE}"):
        assert after[name] == records_before[name], f"{name} is not Flareport's business and must stay as it was"

    # DockFlare's app adopted in place (same id, our tag); its reusable policy untouched.
    [app] = [a for a in stack.access_apps() if a["domain"] == WIKI]
    assert app["id"] == dockflare_app["id"] and app["tags"] == ["flareport"]
    assert stack.cf_state()["access_policies"]["dockflare-policy-admins"] == policies_before["dockflare-policy-admins"]
    # DockFlare's rule for a container that did not come back stays in the tunnel, as a foreign rule.
    assert {"hostname": GONE, "service": "http://gone:80"} in stack.ingress(TUNNEL)

    total = sum(calls.values())
    writes = {e: n for e, n in calls.items() if e.split(" ", 1)[0] in ("POST", "PUT", "PATCH", "DELETE")}
    print(f"migration: {total} Cloudflare calls after enrolment, writes {writes}")

    # A record someone annotated is not taken without being asked: a conflict, until an admin adopts it. An agent's
    # key cannot grant that.
    host.run(
        "noted",
        {"dockflare.enable": "true", "dockflare.hostname": NOTED, "dockflare.service": "http://n:80"},
        stack.image,
    )
    wait_for_sync(
        lambda: [r for r in stack.rules_of(NOTED) if r["status"] == "conflict"],
        timeout=90,
        interval=0.3,
        what="the annotated name reported as a conflict",
    )
    assert by_name(stack)[NOTED] == records_before[NOTED]
    agent_key = (stack.workdir / "dev" / "agent-key").read_text().split()[-1]
    status, refused = stack.api("POST", f"/api/v1/rules/{NOTED}/adopt", key=agent_key)
    assert status in (401, 403), refused
    adopted = flareport(stack, "rules", "adopt", NOTED)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    stack.wait_rules_active({NOTED})
    record = by_name(stack)[NOTED]
    assert record["id"] == records_before[NOTED]["id"] and record["comment"].startswith("managed-by=flareport")
    assert "adopted" in flareport(stack, "rules", "show", NOTED).stdout
