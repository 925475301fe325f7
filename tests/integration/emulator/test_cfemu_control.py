"""Controls: seed, state dump, request log and counters, reset, persistence and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import cloudflare
import pytest

from flareport_cfemu import EmulatorConfig
from flareport_cfemu.client import EmulatorControlError
from flareport_cfemu.testing import ACCOUNT_ID, ZONE_ID, RunningEmulator, running_emulator

SEED: dict[str, Any] = {
    "accounts": [{"id": "c" * 32, "name": "demo"}],
    "zones": [{"id": "d" * 32, "name": "demo.test", "account_id": "c" * 32}],
    "dns_records": [{"zone_name": "demo.test", "id": "1" * 32, "name": "www", "type": "A", "content": "192.0.2.7"}],
    "tunnels": [
        {
            "account_id": "c" * 32,
            "id": "11111111-1111-4111-8111-111111111111",
            "name": "demo-tunnel",
            "config_src": "cloudflare",
            "config": {
                "ingress": [{"hostname": "www.demo.test", "service": "http://web:80"}, {"service": "http_status:404"}]
            },
        }
    ],
    "access_tags": [{"account_id": "c" * 32, "name": "flareport"}],
    "access_apps": [{"account_id": "c" * 32, "type": "self_hosted", "domain": "www.demo.test", "tags": ["flareport"]}],
}


async def test_seed_state_and_reset_over_http(cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare) -> None:
    async with cfemu.control() as control:
        created = await control.seed(SEED)
        assert created["dns_records"] == ["1" * 32]
        record = await acf.dns.records.get("1" * 32, zone_id="d" * 32)
        assert record is not None and record.name == "www.demo.test"
        config = await acf.zero_trust.tunnels.cloudflared.configurations.get(
            "11111111-1111-4111-8111-111111111111", account_id="c" * 32
        )
        assert config is not None and config.version == 1
        state = await control.state()
        assert set(state["zones"]) == {ZONE_ID, "d" * 32}
        assert len(state["access_apps"]) == 1
        with pytest.raises(EmulatorControlError, match="81058"):
            await control.seed(
                {"dns_records": [{"zone_id": "d" * 32, "name": "www", "type": "A", "content": "192.0.2.7"}]}
            )
        await control.reset()
        state = await control.state()
        assert state["zones"] == {} and state["dns_records"] == {}
    with pytest.raises(cloudflare.NotFoundError):
        await acf.zones.get(zone_id=ZONE_ID)


async def test_request_log_counts_calls_per_endpoint_template(
    cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare
) -> None:
    for name in ("a", "b", "c"):
        await acf.dns.records.create(zone_id=ZONE_ID, name=name, type="A", content="192.0.2.1", ttl=1)
    with pytest.raises(cloudflare.BadRequestError):
        await acf.dns.records.create(zone_id=ZONE_ID, name="a", type="A", content="192.0.2.1", ttl=1)
    await acf.zones.get(zone_id=ZONE_ID)
    async with cfemu.control() as control:
        log = await control.requests()
        assert log["counters"] == {"POST /zones/{zone_id}/dns_records": 4, "GET /zones/{zone_id}": 1}
        assert log["status_counters"]["POST /zones/{zone_id}/dns_records 400"] == 1
        assert log["total"] == 5
        first = log["requests"][0]
        assert first["method"] == "POST" and first["path"] == f"/client/v4/zones/{ZONE_ID}/dns_records"
        assert first["status"] == 200 and first["timestamp"].endswith("Z")
        assert await control.count("GET /zones/{zone_id}") == 1
        await control.clear_requests()
        assert (await control.requests())["total"] == 0


async def test_config_endpoint_changes_limits(cfemu: RunningEmulator, acf: cloudflare.AsyncCloudflare) -> None:
    async with cfemu.control() as control:
        config = await control.configure(comment_limit=5)
        assert config["comment_limit"] == 5
        with pytest.raises(EmulatorControlError, match="not tunable"):
            await control.configure(state_file="/tmp/x")
    with pytest.raises(cloudflare.BadRequestError, match="maximum length of 5"):
        await acf.dns.records.create(zone_id=ZONE_ID, name="a", type="TXT", content="x", ttl=1, comment="123456")


async def test_state_file_round_trip_in_process(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "cfemu.json"
    config = EmulatorConfig(state_file=state_file, persist_interval_seconds=0.05)
    async with running_emulator(config) as first, first.async_client() as acf:
        created = await acf.dns.records.create(zone_id=ZONE_ID, name="kept", type="A", content="192.0.2.1", ttl=1)
        assert created is not None
    assert state_file.exists() and not list(state_file.parent.glob("*.tmp"))
    async with running_emulator(config, seed=None) as second, second.async_client() as acf:
        record = await acf.dns.records.get(created.id, zone_id=ZONE_ID)
        assert record is not None and record.name == "kept.example.com"
        zone = await acf.zones.get(zone_id=ZONE_ID)
        assert zone is not None and zone.account.id == ACCOUNT_ID


async def _start_cli(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flareport_cfemu",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
    assert "listening on " in line, f"expected the listening URL, got {line!r}"
    return process, line.split("listening on ", 1)[1].strip()


async def _stop_cli(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=20) == 0


async def test_cli_seeds_serves_and_persists_across_restarts(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(SEED))
    state_file = tmp_path / "state.json"
    process, base_url = await _start_cli("--seed", str(seed_file), "--state-file", str(state_file))
    try:
        async with cloudflare.AsyncCloudflare(api_token="t", base_url=base_url, max_retries=0) as acf:
            await acf.dns.records.create(zone_id="d" * 32, name="added", type="TXT", content="v", ttl=1)
    finally:
        await _stop_cli(process)
    process, base_url = await _start_cli("--state-file", str(state_file))
    try:
        async with cloudflare.AsyncCloudflare(api_token="t", base_url=base_url, max_retries=0) as acf:
            names = sorted([r.name async for r in acf.dns.records.list(zone_id="d" * 32)])
            tunnels = [t.name async for t in acf.zero_trust.tunnels.cloudflared.list(account_id="c" * 32)]
    finally:
        await _stop_cli(process)
    assert names == ["added.demo.test", "www.demo.test"]
    assert tunnels == ["demo-tunnel"]


async def test_cli_token_and_rate_limit_flags(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(SEED))
    process, base_url = await _start_cli("--seed", str(seed_file), "--token", "secret", "--rate-limit", "1")
    try:
        async with cloudflare.AsyncCloudflare(api_token="wrong", base_url=base_url, max_retries=0) as bad:
            with pytest.raises(cloudflare.AuthenticationError):
                await bad.zones.get(zone_id="d" * 32)
        async with cloudflare.AsyncCloudflare(api_token="secret", base_url=base_url, max_retries=0) as good:
            assert await good.zones.get(zone_id="d" * 32) is not None
            with pytest.raises(cloudflare.RateLimitError):
                await good.zones.get(zone_id="d" * 32)
    finally:
        await _stop_cli(process)
