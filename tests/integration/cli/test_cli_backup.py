"""``flareport backup`` / ``flareport restore`` against a real ``flareport api`` process: a backup holds the admin's
state and no secret; after the deployment's Redis data is wiped, a dry run writes nothing, ``--apply`` brings the
same manual rules and access groups back, and a second run changes nothing."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import redis

from flareport_cli.admin.client import ApiClient
from flareport_common.keys import Keys
from flareport_common.readmodel import AgentRecord
from fptest.api_helpers import MASTER
from fptest.cli_helpers import ApiProcess, ReadModel, register_agent, run_cli

TUNNEL_TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwiLCJzIjoic2VjcmV0In0-tunnel-token"


def admin_state(client: ApiClient) -> dict[str, Any]:
    """What the admin sees of manual rules and access groups, without the times they were written."""
    rules = client.get("/api/v1/manual-rules").json()["rules"]
    groups = client.get("/api/v1/access-groups").json()["groups"]
    for item in (*rules, *groups):
        item.pop("updated_at", None)
    return {"rules": rules, "groups": groups}


def seed(api: ApiProcess, readmodel: ReadModel, sync_redis: redis.Redis, keys: Keys) -> tuple[str, str]:
    """Groups, manual rules and an enrolled agent, as an admin and the reconciler leave them; returns the agent's
    key and id."""
    client = ApiClient(api.url, MASTER)
    client.post(
        "/api/v1/access-groups",
        {
            "group_id": "ops",
            "name": "Ops",
            "include": [{"email": {"email": "a@example.com"}}],
            "exclude": [{"email_domain": {"domain": "contractors.example.com"}}],
            "session_duration": "12h",
        },
    )
    client.post("/api/v1/access-groups", {"group_id": "all", "name": "Everyone", "include": [{"everyone": {}}]})
    key = client.post("/api/v1/keys", {"label": "edge"}).json()["key"]
    agent_id = register_agent(api.url, key, "edge one")
    readmodel.put_agent(
        AgentRecord(
            agent_id=agent_id,
            display_name="edge one",
            status="active",
            hostname="edge-1.lan",
            tunnel_id="tun-1",
            tunnel_name="flareport-edge",
            allowed_zones=("example.com",),
            allow_wildcard=True,
            origin_allow=("link-local",),
        )
    )
    # A tunnel token waiting for the agent's start_tunnel command, as the reconciler stashes it.
    sync_redis.set(keys.agent_secret(agent_id, "ref-1"), TUNNEL_TOKEN)
    client.post(
        "/api/v1/manual-rules",
        {
            "rule": {
                "hostname": "shop.example.com",
                "service": "https://10.0.0.5:8443",
                "path": "/api",
                "origin": {"no_tls_verify": True, "http_host_header": "shop.internal"},
                "access": {"groups": ["ops"]},
            },
            "agent_id": agent_id,
        },
    )
    client.post("/api/v1/manual-rules", {"rule": {"hostname": "wiki.example.com", "service": "http://wiki:80"}})
    return key, agent_id


def wipe(sync_redis: redis.Redis, keys: Keys) -> None:
    """Lose every key of the deployment, as a Redis without persistence would."""
    for name in list(sync_redis.scan_iter(match=keys.prefix + "*", count=1000)):
        sync_redis.delete(name)


def test_backup_wipe_restore_gives_the_same_state_and_no_secret_is_in_the_file(
    api: ApiProcess, readmodel: ReadModel, sync_redis: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    client = ApiClient(api.url, MASTER)
    agent_key, agent_id = seed(api, readmodel, sync_redis, keys)
    before = admin_state(client)
    path = tmp_path / "flareport-backup.json"

    written = run_cli("backup", str(path))
    assert written.code == 0, written.err
    assert "2 manual rules, 2 access groups, 1 agents" in written.out
    assert "new key" in written.out, "the admin is told what a restore cannot bring back"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    for secret in (MASTER, agent_key, hashlib.sha256(agent_key.encode()).hexdigest(), TUNNEL_TOKEN):
        assert secret not in text, "a backup never holds a key, a key's hash or a tunnel token"
    document = json.loads(text)
    assert (document["format"], document["format_version"], document["source_prefix"]) == (
        "flareport-backup",
        1,
        keys.prefix,
    )
    [agent] = document["agents"]
    assert agent == {
        "agent_id": agent_id,
        "display_name": "edge one",
        "hostname": "edge-1.lan",
        "tunnel_id": "tun-1",
        "tunnel_name": "flareport-edge",
        "allowed_zones": ["example.com"],
        "allowed_suffixes": [],
        "allow_wildcard": True,
        "allow_apex": False,
        "origin_allow": ["link-local"],
    }

    wipe(sync_redis, keys)
    assert admin_state(client)["rules"] == []

    dry = run_cli("restore", str(path))
    assert dry.code == 0, dry.err
    assert sum(line.startswith("  would create") for line in dry.lines()) == 4
    assert f"missing       agent {agent_id}" in dry.out
    assert "Nothing was written" in dry.out
    assert admin_state(client)["rules"] == [] and readmodel.intents() == [], "a dry run writes nothing"

    applied = run_cli("restore", str(path), "--apply", "--json")
    assert applied.code == 0, applied.err
    actions = {(o["kind"], o["id"]): o["action"] for o in applied.json()["objects"]}
    assert actions == {
        ("access_group", "ops"): "created",
        ("access_group", "all"): "created",
        ("manual_rule", "shop.example.com/api"): "created",
        ("manual_rule", "wiki.example.com"): "created",
        ("agent", agent_id): "missing",
    }
    assert admin_state(client) == before, "the same rules (same ids) and groups as before the loss"
    intents = len(readmodel.intents())

    again = run_cli("restore", str(path), "--apply", "--json")
    assert again.code == 0, again.err
    assert again.json()["summary"] == {"unchanged": 4, "missing": 1}
    assert len(readmodel.intents()) == intents, "running it twice changes nothing"


def test_a_bad_or_partial_document_is_refused_naming_the_field_and_nothing_is_written(
    api: ApiProcess, readmodel: ReadModel, sync_redis: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    client = ApiClient(api.url, MASTER)
    seed(api, readmodel, sync_redis, keys)
    document = client.get("/api/v1/backup").json()
    wipe(sync_redis, keys)
    path = tmp_path / "backup.json"

    bad = json.loads(json.dumps(document))
    bad["manual_rules"][1]["rule"]["hostname"] = "not a hostname"
    partial = {k: v for k, v in document.items() if k != "format_version"}
    twice = json.loads(json.dumps(document))
    twice["access_groups"].append(twice["access_groups"][0])
    cases = [
        (bad, "(field: manual_rules[1].rule.hostname)"),
        (partial, "format_version"),
        (twice, "(field: access_groups[2])"),
        ({**document, "format": "dockflare"}, "(field: format)"),
    ]
    for body, field in cases:
        path.write_text(json.dumps(body))
        refused = run_cli("restore", str(path), "--apply")
        assert refused.code == 1, refused.out
        assert field in refused.err and "HTTP 422" in refused.err, refused.err
    path.write_text("{not json")
    assert run_cli("restore", str(path), "--apply").code == 2
    assert admin_state(client)["rules"] == [] and readmodel.intents() == [], "nothing written for a refused file"

    # A group changed here since the backup: reported as a conflict (exit 1) and left as it is.
    client.post("/api/v1/access-groups", {"group_id": "ops", "name": "Ops (new)", "include": [{"everyone": {}}]})
    path.write_text(json.dumps(document))
    conflict = run_cli("restore", str(path), "--apply")
    assert conflict.code == 1
    assert "conflict      access group ops" in conflict.out
    assert client.get("/api/v1/access-groups/ops").json()["name"] == "Ops (new)"
    assert len(admin_state(client)["rules"]) == 2, "the rest was restored"
