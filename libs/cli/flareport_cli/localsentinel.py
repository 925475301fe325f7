"""A Redis primary, its replicas and three Sentinels as local processes on loopback: for failover tests and
``bench/redis_failover.py``.

Sentinels are ``redis-server --sentinel`` (what Debian's ``redis-sentinel`` package runs), so the ``redis-server``
that ``make deps`` installs is all it needs. Data nodes and Sentinels require passwords (different ones, as in a
real setup), written to config files (mode 0600) rather than onto command lines. Sentinel rewrites its config file
as it learns the topology; each one has its own.

Timings are short on purpose (a node is down after ``down_after_ms`` without a reply): a test measures a failover
in seconds, where production keeps Redis' defaults (30 s) or whatever its network needs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from flareport_cli.localredis import RedisServerError, end_process, free_port

MASTER_NAME = "mymaster"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclass
class Node:
    """One redis-server process (a data node or a Sentinel) with its own directory and config file."""

    name: str
    workdir: Path
    port: int
    conf: str
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "node.conf"
        _write_private(path, self.conf)
        args = ["redis-server", str(path), *(["--sentinel"] if self.sentinel else [])]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, umask=0o077
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        end_process(process, kill=kill, timeout=10)


class LocalSentinelSet:
    """``replicas`` replicas of one primary and ``sentinels`` Sentinels watching it under ``MASTER_NAME``."""

    def __init__(
        self, workdir: Path, *, replicas: int = 1, sentinels: int = 3, down_after_ms: int = 1000, aof: bool = True
    ) -> None:
        if shutil.which("redis-server") is None:
            raise RedisServerError("redis-server not found; `make deps` installs it")
        self.workdir = workdir
        self.password = secrets.token_hex(16)
        self.sentinel_password = secrets.token_hex(16)
        self.down_after_ms = down_after_ms
        self.aof = aof
        self.data: list[Node] = []
        self.sentinels: list[Node] = []
        first = free_port()
        for index in range(1 + replicas):
            port = first if index == 0 else free_port()
            self.data.append(
                Node(f"redis-{index}", workdir / f"redis-{index}", port, self._data_conf(port, first, index))
            )
        for index in range(sentinels):
            port = free_port()
            conf = self._sentinel_conf(port, first, quorum=sentinels // 2 + 1)
            self.sentinels.append(Node(f"sentinel-{index}", workdir / f"sentinel-{index}", port, conf, sentinel=True))

    def _data_conf(self, port: int, primary: int, index: int) -> str:
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f'dir "{self.workdir / f"redis-{index}"}"',
            f'logfile "{self.workdir / f"redis-{index}" / "redis.log"}"',
            'save ""',
            f"appendonly {'yes' if self.aof else 'no'}",
            "appendfsync everysec",
            f"requirepass {self.password}",
            # A demoted primary must authenticate to the new one.
            f"masterauth {self.password}",
        ]
        if index:
            lines.append(f"replicaof 127.0.0.1 {primary}")
        return "\n".join(lines) + "\n"

    def _sentinel_conf(self, port: int, primary: int, *, quorum: int) -> str:
        index = len(self.sentinels)
        return (
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f'dir "{self.workdir / f"sentinel-{index}"}"',
                    f'logfile "{self.workdir / f"sentinel-{index}" / "sentinel.log"}"',
                    f"requirepass {self.sentinel_password}",
                    # Sentinels of one set authenticate to each other with the password they all require.
                    f"sentinel sentinel-pass {self.sentinel_password}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} {quorum}",
                    f"sentinel auth-pass {MASTER_NAME} {self.password}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                    f"sentinel failover-timeout {MASTER_NAME} {max(3000, 4 * self.down_after_ms)}",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                ]
            )
            + "\n"
        )

    # ----------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 30.0) -> LocalSentinelSet:
        for node in self.data:
            node.start()
        self._wait(lambda: all(self._replicating(n) for n in self.data[1:]) and self._ping(self.data[0]), timeout,
                   "the replicas to sync with the primary")  # fmt: skip
        for node in self.sentinels:
            node.start()
        self._wait(self._sentinels_agree, timeout, "every Sentinel to see the primary, its replicas and each other")
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()

    @property
    def env(self) -> dict[str, str]:
        """The settings a Flareport service needs to reach this set."""
        return {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{n.port}" for n in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_SENTINEL_PASSWORD": self.sentinel_password,
            "REDIS_PASSWORD": self.password,
        }

    # ----------------------------------------------------------------- topology
    def master_port(self) -> int | None:
        """The primary's port as the first answering Sentinel reports it."""
        for node in self.sentinels:
            try:
                with self._client(node, self.sentinel_password) as client:
                    address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def master(self) -> Node:
        port = self.master_port()
        return next(n for n in self.data if n.port == port)

    def kill_master(self) -> Node:
        """SIGKILL the current primary (no shutdown, no last fsync): what a crashed host looks like."""
        node = self.master()
        node.stop(kill=True)
        return node

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> Node:
        """Wait until the Sentinels name another primary and that node accepts writes; the new primary."""

        def promoted() -> bool:
            port = self.master_port()
            node = next((n for n in self.data if n.port == port and port != old_port), None)
            return node is not None and self._role(node) == "master"

        self._wait(promoted, timeout, "a replica promoted by the Sentinels")
        return self.master()

    def heal(self, timeout: float = 60.0, *, replicas: int | None = None) -> None:
        """Start every stopped data node again (Sentinel makes an old primary a replica of the new one) and wait
        until the primary streams to all of them and every Sentinel counts them healthy: ready for the next
        failover. With ``replicas``, nothing is started while that many replicas are online already (an old
        primary's return is noticed by Sentinel's INFO only every 10 s, and it is a primary of its own until then).
        """
        if replicas is not None and len(self.replicas_online()) >= replicas:
            # Enough spares: a node brought back now would be a stale primary until Sentinel demotes it.
            self._wait(lambda: self._sentinels_agree(healthy_replicas=replicas), timeout, "Sentinels to see the spares")
            return
        for node in self.data:
            if not node.running:
                node.start()
        wanted = len(self.data) - 1

        def healthy() -> bool:
            if len(self.replicas_online()) < wanted:
                return False
            return self._sentinels_agree(healthy_replicas=wanted)

        self._wait(healthy, timeout, "the old primary back as a replica, seen by every Sentinel")

    def replicas_online(self) -> list[Node]:
        """The replicas the primary streams to, their initial sync over (state online), not merely connected."""
        try:
            with self.client(self.master()) as primary:
                info = primary.info("replication")
        except (redis.RedisError, StopIteration):
            return []
        ports = {int(v["port"]) for v in info.values() if isinstance(v, dict) and v.get("state") == "online"}
        return [n for n in self.data if n.port in ports]

    def client(self, node: Node) -> redis.Redis:
        return self._client(node, self.password)

    # ----------------------------------------------------------------- checks
    def _client(self, node: Node, password: str) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, password=password, socket_timeout=2)

    def _ping(self, node: Node) -> bool:
        try:
            with self.client(node) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def _role(self, node: Node) -> str:
        try:
            with self.client(node) as client:
                role = client.execute_command("ROLE")
        except redis.RedisError:
            return ""
        return str(role[0].decode() if isinstance(role[0], bytes) else role[0])

    def _replicating(self, node: Node) -> bool:
        try:
            with self.client(node) as client:
                info = client.info("replication")
        except redis.RedisError:
            return False
        return bool(info.get("master_link_status") == "up")

    def _sentinels_agree(self, *, healthy_replicas: int = 0) -> bool:
        for node in self.sentinels:
            try:
                with self._client(node, self.sentinel_password) as client:
                    state = client.sentinel_master(MASTER_NAME)
                    replicas = client.sentinel_slaves(MASTER_NAME) if healthy_replicas else []
            except redis.RedisError:
                return False
            if not healthy_replicas and int(state["num-slaves"]) < len(self.data) - 1:  # at start: all known
                return False
            if int(state["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
            up = [r for r in replicas if not (r["is_sdown"] or r["is_odown"] or r["is_disconnected"])]
            if len(up) < healthy_replicas:
                return False
        return True

    @staticmethod
    def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise RedisServerError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)
