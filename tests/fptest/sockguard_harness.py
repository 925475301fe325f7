"""The socket guard in a thread of its own (tests and the bench call it with blocking clients), and raw HTTP
requests to a Docker API on a unix socket (exact bytes: duplicate keys, odd casing, bodies the SDK would not send)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from pathlib import Path
from typing import Any

from flareport_agent.sockguard import Policy
from flareport_agent.sockguard_server import Endpoint, SocketGuard


class GuardThread:
    """``SocketGuard`` listening on ``socket_path``, forwarding to the engine's socket, run by its own event loop."""

    def __init__(self, policy: Policy, engine_socket: Path, socket_path: Path) -> None:
        self.guard = SocketGuard(policy, Endpoint("unix", str(engine_socket)))
        self.socket_path = socket_path
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="socket-guard", daemon=True)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> GuardThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the socket guard did not start")
        if self._failed is not None:
            raise RuntimeError("the socket guard did not start") from self._failed
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.guard.start(Endpoint("unix", str(self.socket_path))))
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.guard.close())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 60) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def raw(socket_path: Path, method: str, path: str, body: bytes | dict[str, Any] | None = None) -> tuple[int, Any]:
    """One request, answered in full: (status, the JSON answer, or its text when it is not JSON)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    connection = UnixHTTPConnection(socket_path)
    try:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(payload) if payload.strip() else None
    except ValueError:
        return response.status, payload.decode(errors="replace")
