"""``flareport socket-guard``: the I/O edge of the socket guard (``sockguard.py`` decides, this forwards).

An aiohttp server on a unix socket or a TCP address, in front of the Docker API (``--upstream``). Each request is
routed by ``sockguard.route``; a refused one gets 403 ``{"message": ...}`` and one log line (method, path, reason:
never a body, which for cloudflared holds the tunnel token). An allowed one is sent upstream as rebuilt by the
route, and the answer streams back as it arrives (the events stream, a pull's progress), except a container's
inspect answer, which is read (bounded) and redacted. Before a start, stop, restart, kill or remove, the target is
inspected upstream: only a container carrying the ownership label is acted on, by its full id.

Handlers are cancelled when their client goes away (``handler_cancellation``), so an events stream the agent drops
closes its upstream stream at once instead of when the next event arrives.

Configuration: options, or the environment (``FLAREPORT_GUARD_LISTEN``, ``FLAREPORT_GUARD_UPSTREAM`` else
``DOCKER_HOST``, ``CLOUDFLARED_IMAGE``, ``FLAREPORT_GUARD_NETWORK`` else ``CLOUDFLARED_NETWORK_NAME``,
``CLOUDFLARED_METRICS_PORT``, ``FLAREPORT_GUARD_SOCKET_MODE``): the agent's variables, so one set of them serves
both. See docs/agent.md and docs/security.md ("Docker access").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from flareport_agent.cloudflared import NETWORK, command
from flareport_agent.sockguard import (
    MAX_BODY,
    MAX_INSPECT,
    Policy,
    Refused,
    Route,
    check_container_create,
    check_network_create,
    owned,
    redact_inspect,
    route,
)
from flareport_common.logs import get_logger, setup_logging
from flareport_common.runtime import install_stop_handlers
from flareport_common.settings import DEFAULT_CLOUDFLARED_IMAGE, load_logging, load_or_exit

log = get_logger("flareport.agent.sockguard")

# Answer headers passed back (the rest are the hop's own: length and encoding are aiohttp's to set).
_PASSED = ("Content-Type", "Api-Version", "Docker-Experimental", "Ostype", "Server", "Libpod-Api-Version")
_STREAMING = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
_SHORT = aiohttp.ClientTimeout(total=60, sock_connect=10)


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: str  # "unix" or "tcp"
    address: str  # a path, or a host
    port: int = 0


def parse_endpoint(value: str, what: str) -> Endpoint:
    """``unix:/path``, ``unix:///path``, ``tcp:host:port``, ``tcp://host:port`` (and ``http://host:port`` upstream)."""
    scheme, sep, rest = value.partition(":")
    if not sep:
        raise ValueError(f"{what}: expected unix:/path or tcp:host:port, got {value!r}")
    if scheme == "unix":
        path = "/" + rest.lstrip("/")
        if path == "/":
            raise ValueError(f"{what}: a unix socket needs a path, got {value!r}")
        return Endpoint("unix", path)
    if scheme in ("tcp", "http"):
        hostport = rest.removeprefix("//").rstrip("/")
        host, colon, port = hostport.rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ValueError(f"{what}: expected tcp:host:port, got {value!r}")
        return Endpoint("tcp", host.strip("[]"), int(port))
    raise ValueError(f"{what}: expected unix:/path or tcp:host:port, got {value!r}")


class SocketGuard:
    def __init__(self, policy: Policy, upstream: Endpoint) -> None:
        self.policy = policy
        self.upstream = upstream
        self.refused = 0
        self.forwarding = 0  # requests being forwarded right now (an open events stream is one)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.addresses: list[Any] = []

    @property
    def _base(self) -> str:
        return (
            "http://docker" if self.upstream.kind == "unix" else f"http://{self.upstream.address}:{self.upstream.port}"
        )

    async def start(self, listen: Endpoint, *, socket_mode: int = 0o660) -> None:
        connector: aiohttp.BaseConnector = (
            aiohttp.UnixConnector(path=self.upstream.address)
            if self.upstream.kind == "unix"
            else aiohttp.TCPConnector(limit=0)
        )
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site: web.BaseSite
        if listen.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(listen.address)  # a stale socket of an earlier run
            site = web.UnixSite(self._runner, listen.address)
            await site.start()
            os.chmod(listen.address, socket_mode)
        else:
            site = web.TCPSite(self._runner, listen.address, listen.port)
            await site.start()
        self.addresses = list(self._runner.addresses)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the socket guard is not started")
        return self._session

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            allowed = route(self.policy, request.method, request.path, list(request.query.items()))
            body = await _read_body(request)
            data: bytes | None = None
            if allowed.kind == "create_container":
                data = check_container_create(self.policy, body)
            elif allowed.kind == "create_network":
                data = check_network_create(self.policy, body)
            elif body:
                raise Refused(f"{request.method} {request.path} takes no body")
            if allowed.kind == "owned":
                return await self._owned(request, allowed)
            if allowed.kind == "inspect":
                return await self._inspect(allowed)
            return await self._forward(request, allowed.method, allowed.url(), data)
        except aiohttp.ClientConnectionError as exc:
            log.warning("sockguard.engine_unreachable", method=request.method, path=request.path, error=str(exc))
            return web.json_response({"message": f"the socket guard cannot reach the engine: {exc}"}, status=502)
        except Refused as refusal:
            self.refused += 1
            log.warning("sockguard.refused", method=request.method, path=request.path, reason=refusal.message)
            return web.json_response({"message": refusal.message}, status=refusal.status)

    async def _owned(self, request: web.Request, allowed: Route) -> web.StreamResponse:
        prefix = allowed.path.split("/containers/", 1)[0]
        inspect = await self._inspect_answer(f"{prefix}/containers/{allowed.target}/json")
        if isinstance(inspect, web.StreamResponse):
            return inspect
        if not owned(self.policy, inspect):
            key, value = self.policy.owner_label
            raise Refused(f"container {allowed.target} does not carry the ownership label {key}={value}")
        full_id = str(inspect.get("Id") or "")
        if not full_id.isalnum():
            raise Refused("the engine's inspect answer has no usable Id", status=502)
        suffix = "" if allowed.action == "delete" else f"/{allowed.action}"
        return await self._forward(request, allowed.method, allowed.url(f"{prefix}/containers/{full_id}{suffix}"))

    async def _inspect_answer(self, path: str) -> Any:
        """The engine's inspect answer for ``path``, decoded; or, when the engine refused, that answer relayed."""
        async with self.session.get(f"{self._base}{path}", timeout=_SHORT) as answer:
            raw = await _read_bounded(answer)
            if answer.status != 200:
                return _relay(answer, raw)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Refused("the engine's inspect answer is not JSON", status=502) from exc

    async def _inspect(self, allowed: Route) -> web.StreamResponse:
        inspect = await self._inspect_answer(allowed.url())
        if isinstance(inspect, web.StreamResponse):
            return inspect
        response = web.Response(body=json.dumps(redact_inspect(self.policy, inspect)).encode(), status=200)
        response.headers["Content-Type"] = "application/json"
        return response

    async def _forward(
        self, request: web.Request, method: str, url: str, data: bytes | None = None
    ) -> web.StreamResponse:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.forwarding += 1
        try:
            return await self._stream(request, method, url, data, headers)
        finally:
            self.forwarding -= 1

    async def _stream(
        self, request: web.Request, method: str, url: str, data: bytes | None, headers: dict[str, str]
    ) -> web.StreamResponse:
        async with self.session.request(
            method, f"{self._base}{url}", data=data, headers=headers, timeout=_STREAMING, allow_redirects=False
        ) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for name in _PASSED:
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            if answer.content_length is not None:
                response.content_length = answer.content_length
            await response.prepare(request)
            try:
                if method != "HEAD":
                    async for chunk in answer.content.iter_any():
                        await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                # The client went away (an events stream it closed) or the engine did mid-answer: nothing to send.
                log.debug("sockguard.stream_ended_early", path=request.path, error=str(exc))
            return response


def _relay(answer: aiohttp.ClientResponse, raw: bytes) -> web.Response:
    response = web.Response(body=raw, status=answer.status)
    response.headers["Content-Type"] = answer.headers.get("Content-Type", "application/json")
    return response


async def _read_bounded(answer: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_any():
        size += len(chunk)
        if size > MAX_INSPECT:
            raise Refused(f"the engine's answer is larger than {MAX_INSPECT} bytes", status=502)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused(f"body larger than {MAX_BODY} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(f"body larger than {MAX_BODY} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="flareport socket-guard",
        description="A Docker API proxy that lets through only what the Flareport agent needs, body included: "
        "reads of containers, images, networks and events; creating only the agent's cloudflared (configured "
        "image, no privileges, mounts, devices, capabilities or host namespaces); acting only on containers "
        "carrying the agent's ownership label. Everything else is refused with 403. See docs/security.md.",
    )
    parser.add_argument(
        "--listen",
        default=env.get("FLAREPORT_GUARD_LISTEN", "tcp:127.0.0.1:2375"),
        help="unix:/path or tcp:host:port (FLAREPORT_GUARD_LISTEN; default tcp:127.0.0.1:2375)",
    )
    parser.add_argument(
        "--upstream",
        default=env.get("FLAREPORT_GUARD_UPSTREAM") or env.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
        help="the Docker API: unix:///var/run/docker.sock or tcp://host:port "
        "(FLAREPORT_GUARD_UPSTREAM, else DOCKER_HOST, else the default socket)",
    )
    parser.add_argument(
        "--image",
        default=env.get("CLOUDFLARED_IMAGE") or DEFAULT_CLOUDFLARED_IMAGE,
        help=f"the agent's CLOUDFLARED_IMAGE, the only image it may pull and run (default {DEFAULT_CLOUDFLARED_IMAGE})",
    )
    parser.add_argument(
        "--network",
        default=env.get("FLAREPORT_GUARD_NETWORK") or env.get("CLOUDFLARED_NETWORK_NAME") or NETWORK,
        help="the cloudflared network, the only one it may create (FLAREPORT_GUARD_NETWORK, else the agent's "
        f"CLOUDFLARED_NETWORK_NAME; default {NETWORK})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env.get("CLOUDFLARED_METRICS_PORT") or None,
        help="the agent's CLOUDFLARED_METRICS_PORT: cloudflared's command may then carry --metrics 0.0.0.0:PORT "
        "(default: unset, the plain command only)",
    )
    parser.add_argument(
        "--socket-mode",
        default=env.get("FLAREPORT_GUARD_SOCKET_MODE") or "660",
        help="octal mode of a unix listening socket (FLAREPORT_GUARD_SOCKET_MODE; default 660)",
    )
    return parser


def build_policy(options: argparse.Namespace) -> Policy:
    """The cloudflared the guard lets the agent create: the agent's image, network and command (``--metrics``
    when the agent has a metrics port)."""
    port: int | None = options.metrics_port
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"--metrics-port: must be 1-65535, got {port}")
    return Policy(image=options.image, network=options.network, command=command(port))


async def serve(guard: SocketGuard, listen: Endpoint, socket_mode: int) -> int:
    stop = asyncio.Event()
    install_stop_handlers(stop.set)
    await guard.start(listen, socket_mode=socket_mode)
    log.info(
        "sockguard.listening",
        listen=[str(address) for address in guard.addresses],
        upstream=guard.upstream.address,
        image=guard.policy.image,
        network=guard.policy.network,
    )
    try:
        await stop.wait()
    finally:
        await guard.close()
    return 0


def main(argv: Sequence[str]) -> int:
    options = build_parser().parse_args(list(argv))
    try:
        listen = parse_endpoint(options.listen, "--listen")
        upstream = parse_endpoint(options.upstream, "--upstream")
        socket_mode = int(options.socket_mode, 8)
        policy = build_policy(options)
    except ValueError as exc:
        print(f"flareport socket-guard: invalid configuration: {exc}", file=sys.stderr)
        return 2
    level, fmt = load_or_exit(load_logging)
    setup_logging(level, fmt, service="socket-guard")
    guard = SocketGuard(policy, upstream)
    return asyncio.run(serve(guard, listen, socket_mode))
