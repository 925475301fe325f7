"""A client that hangs up mid-request, against a real ``flareport api`` process (the in-process test server
cancels handlers on a lost connection, which the real server does not): an agent stopped while sending, or a
proxy timing out, is no server error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from flareport_cli.localredis import LocalRedis
from fptest.api_helpers import MASTER
from fptest.cli_helpers import api_process
from fptest.waiting import wait_for

ROUTE = "/api/v1/agents/{agent_id}/heartbeat"


def _sample(metrics: str, name: str, status: str | None = None) -> float:
    """The heartbeat route's sample of ``name`` (with ``status``, when given); 0 when there is none yet."""
    wanted = {"route": ROUTE, **({"status": status} if status else {})}
    samples = (sample for family in text_string_to_metric_families(metrics) for sample in family.samples)
    return next((sample.value for sample in samples if sample.name == name and sample.labels == wanted), 0.0)


async def test_a_client_that_hangs_up_mid_body_is_counted_as_such_not_as_a_server_error(
    redis_server: LocalRedis, prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "api.log"
    with api_process(redis_server.url, prefix, log, {"LOG_LEVEL": "info"}) as api:
        async with aiohttp.ClientSession(api.url) as http:
            created = await (await http.post("/api/v1/keys", json={"label": "h"}, headers=_admin())).json()
            bearer = {"Authorization": f"Bearer {created['key']}"}
            registered = await http.post("/api/v1/agents/register", json={"display_name": "h"}, headers=bearer)
            agent_id = (await registered.json())["agent_id"]

            async def metrics() -> str:
                return await (await http.get("/metrics")).text()

            host, port = api.url.removeprefix("http://").split(":")
            _, writer = await asyncio.open_connection(host, int(port))
            head = (
                f"POST /api/v1/agents/{agent_id}/heartbeat HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {created['key']}\r\nContent-Type: application/json\r\n"
                "Content-Length: 500\r\n\r\n"
            )
            writer.write(head.encode() + b'{"tunnel": {')
            await writer.drain()
            writer.close()
            await writer.wait_closed()

            async def counted() -> bool:
                return _sample(await metrics(), "flareport_api_requests_total", "499") == 1

            await wait_for(counted, what="the API to count the request its client gave up on")
            text = await metrics()
            assert _sample(text, "flareport_api_server_errors_total") == 0, "no server error an operator is paged for"
            assert _sample(text, "flareport_api_requests_total", "500") == 0
            # A whole heartbeat still works on the same server.
            whole = await http.post(f"/api/v1/agents/{agent_id}/heartbeat", json={}, headers=bearer)
            assert whole.status == 200, await whole.text()
    lines = log.read_text()
    assert "api.unhandled_error" not in lines
    assert "api.client_disconnected" in lines


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {MASTER}"}
