"""The workers' small HTTP server: liveness, readiness from a dependency check, Prometheus metrics."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from flareport_common.health import bound_port, start_health_server


async def test_health_readiness_and_metrics() -> None:
    ready = {"ok": False}

    async def check() -> bool:
        return ready["ok"]

    runner = await start_health_server("127.0.0.1", 0, check)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 503, "not ready while the dependency check fails"
            ready["ok"] = True
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200
            async with http.get(f"{base}/metrics") as response:
                body = await response.text()
                assert response.status == 200
                assert "flareport_stream_messages_total" in body
    finally:
        await runner.cleanup()


async def test_readiness_names_the_failing_dependency_and_nothing_internal() -> None:
    async def check() -> bool:
        raise ConnectionError("Error 111 connecting to redis://10.0.0.7:6380. Connection refused.")

    runner = await start_health_server("127.0.0.1", 0, check, check="redis")
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{bound_port(runner)}/readyz") as response,
        ):
            assert response.status == 503
            text = await response.text()
    finally:
        await runner.cleanup()
    # Anyone may ask: the answer says which check failed, the log says why.
    assert json.loads(text) == {"status": "unavailable", "checks": {"redis": "down"}}
    for detail in ("10.0.0.7", "6380", "redis://", "refused", "Error"):
        assert detail not in text


async def test_other_paths_and_methods_are_refused_and_the_server_keeps_serving() -> None:
    runner = await start_health_server("127.0.0.1", 0)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", bound_port(runner))
        writer.write(b"\x00garbage without a blank line")
        writer.close()  # a probe that hangs up mid-request gets nothing and breaks nothing
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/admin") as response:
                assert response.status == 404, "only /healthz, /readyz and /metrics exist"
            async with http.post(f"{base}/healthz") as response:
                assert response.status == 405, "the routes answer GET only"
            async with http.get(f"{base}/healthz?probe=1") as response:
                assert response.status == 200, "a query string does not change the route"
                assert await response.json() == {"status": "ok"}
    finally:
        await runner.cleanup()
