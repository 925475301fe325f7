"""The workers' small HTTP server: liveness, readiness from a dependency check, Prometheus metrics."""

from __future__ import annotations

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


async def test_readiness_reports_the_failing_dependency() -> None:
    async def check() -> bool:
        raise ConnectionError("redis at 127.0.0.1:1 refused the connection")

    runner = await start_health_server("127.0.0.1", 0, check)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{bound_port(runner)}/readyz") as response,
        ):
            assert response.status == 503
            assert "refused" in (await response.json())["error"]
    finally:
        await runner.cleanup()
