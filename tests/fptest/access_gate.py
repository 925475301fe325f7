"""A stand-in for Cloudflare Access in front of the API: forwards a request only when it carries the expected
service token headers (``CF-Access-Client-Id`` / ``CF-Access-Client-Secret``), answers 403 with an HTML page
otherwise (what Access answers, not the API's JSON), and records every request it saw.

It strips the two headers before forwarding, as Cloudflare does, so the API never sees the service token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

_HOP = {"host", "content-length", "transfer-encoding", "connection", "cf-access-client-id", "cf-access-client-secret"}


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    allowed: bool


@dataclass
class AccessGate:
    upstream: str
    client_id: str
    client_secret: str
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def calls(self, *, allowed: bool) -> set[tuple[str, str]]:
        """(method, path with the agent id replaced by ``{id}``) of the requests let through (or refused)."""
        found = set()
        for seen in self.seen:
            if seen.allowed == allowed:
                parts = seen.path.split("/")
                if len(parts) > 4 and parts[3] == "agents" and parts[4] != "register":
                    parts[4] = "{id}"
                if len(parts) > 6 and parts[5] == "commands":
                    parts[6] = "{command}"
                found.add((seen.method, "/".join(parts)))
        return found

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        allowed = (
            request.headers.get("CF-Access-Client-Id") == self.client_id
            and request.headers.get("CF-Access-Client-Secret") == self.client_secret
        )
        self.seen.append(Seen(request.method, request.path, allowed))
        if not allowed:
            return web.Response(status=403, text="<html><body>Forbidden</body></html>", content_type="text/html")
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._http.request(
            request.method,
            self.upstream + request.path_qs,
            data=await request.read(),
            headers=headers,
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, body=body, headers=kept)
