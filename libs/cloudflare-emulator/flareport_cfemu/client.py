"""A small typed client for the ``/__emulator`` controls, for tests, benchmarks and demos.

Use it when the emulator runs in another process (``flareport-cfemu``); in-process tests can
call :class:`~flareport_cfemu.runtime.Emulator` methods directly instead.  ``base_url`` is the
server root (``http://127.0.0.1:8787``); a trailing ``/client/v4`` is accepted and ignored.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypedDict, cast

import aiohttp

Json = dict[str, Any]


class RequestLogSnapshot(TypedDict):
    total: int
    counters: dict[str, int]
    status_counters: dict[str, int]
    requests: list[Json]


class EmulatorControlError(RuntimeError):
    """A control call the emulator refused (bad seed, bad fault rule, ...)."""


class EmulatorControl:
    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/client/v4") + "/__emulator"
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> EmulatorControl:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(method, self.base_url + path, json=json, params=params) as response:
            body = await response.json()
        if not body.get("success"):
            raise EmulatorControlError(f"{method} {path}: {body.get('errors')}")
        return body.get("result")

    async def seed(self, data: Json, *, replace: bool = False) -> dict[str, list[str]]:
        params = {"replace": "true"} if replace else None
        return cast(dict[str, list[str]], await self._call("POST", "/seed", json=data, params=params))

    async def state(self) -> Json:
        return cast(Json, await self._call("GET", "/state"))

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def requests(self, *, limit: int | None = None) -> RequestLogSnapshot:
        params = {"limit": str(limit)} if limit is not None else None
        return cast(RequestLogSnapshot, await self._call("GET", "/requests", params=params))

    async def count(self, endpoint: str) -> int:
        """Calls seen for ``"METHOD /template"`` (e.g. ``"POST /zones/{zone_id}/dns_records/batch"``)."""
        return (await self.requests(limit=0))["counters"].get(endpoint, 0)

    async def clear_requests(self) -> None:
        await self._call("DELETE", "/requests")

    async def add_faults(self, *rules: Json, replace: bool = False) -> list[Json]:
        params = {"replace": "true"} if replace else None
        return cast(list[Json], await self._call("POST", "/faults", json=list(rules), params=params))

    async def faults(self) -> list[Json]:
        return cast(list[Json], await self._call("GET", "/faults"))

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults")

    async def config(self) -> Json:
        return cast(Json, await self._call("GET", "/config"))

    async def configure(self, **changes: Any) -> Json:
        return cast(Json, await self._call("POST", "/config", json=changes))

    async def connect_tunnel(self, tunnel_id: str, *, client_id: str | None = None, connections: int = 4) -> str:
        """Start a connector on ``tunnel_id`` (as ``cloudflared tunnel run`` would); returns its client id."""
        body: Json = {"connections": connections, **({"client_id": client_id} if client_id else {})}
        result = await self._call("POST", f"/tunnels/{tunnel_id}/connect", json=body)
        return str(result["client_id"])

    async def disconnect_tunnel(self, tunnel_id: str, *, client_id: str | None = None) -> int:
        """Stop one connector (or all): their connections linger for ``connection_linger_seconds``."""
        body: Json = {"client_id": client_id} if client_id else {}
        result = await self._call("POST", f"/tunnels/{tunnel_id}/disconnect", json=body)
        return int(result["stopped"])
