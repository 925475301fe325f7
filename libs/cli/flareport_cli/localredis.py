"""A local ``redis-server`` process on a free loopback port: for ``flareport dev``, tests and benchmarks.

Never assumes port 6379 is free or ours. Data lives in a directory of the caller's choosing; with ``aof=True``
the append-only file makes a restart keep every acknowledged write (what durability tests need).

With ``password`` (what ``flareport dev`` passes) Redis requires it: it goes into ``redis.conf`` in the work
directory (mode 0600), never onto the command line, where ``ps`` would show it to every user of the machine, and
into ``url``. With ``umask`` (``flareport dev``: 0o077) the server creates its files with it: the AOF and RDB
files hold tunnel tokens and keys.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


class RedisServerError(RuntimeError):
    pass


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process. The port is only reserved once its user binds
    it, and the kernel may offer a just-released port again: two services configured one after the other (a health
    port each) must not get the same one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class LocalRedis:
    def __init__(
        self,
        workdir: Path,
        *,
        aof: bool = False,
        binary: str = "redis-server",
        password: str | None = None,
        umask: int | None = None,
    ) -> None:
        if password is not None and (not password or any(c.isspace() or c in "\"'\\@:/" for c in password)):
            raise RedisServerError("the local Redis password must be non-empty, without spaces, quotes, @, : or /")
        self.workdir = workdir
        self.aof = aof
        self.binary = binary
        self.password = password
        self.umask = umask
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisServerError("redis-server is not started")
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "redis.conf"

    def _write_conf(self) -> list[str]:
        """The config file argument (first on redis-server's command line), when there is a password to keep off it."""
        if self.password is None:
            return []
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, f"requirepass {self.password}\n".encode())
        finally:
            os.close(fd)
        return [str(self.conf_path)]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, port: int | None = None, *, timeout: float = 10.0) -> None:
        if shutil.which(self.binary) is None:
            raise RedisServerError(f"{self.binary} not found; `make deps` installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.umask is not None:
            self.workdir.chmod(0o777 & ~self.umask)
        conf = self._write_conf()
        # A port found free can be taken before redis binds it: try a few.
        for _ in range(5):
            chosen = port or self.port or free_port()
            self._process = subprocess.Popen(
                [
                    self.binary,
                    *conf,
                    "--port", str(chosen),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "yes" if self.aof else "no",
                    "--appendfsync", "always" if self.aof else "no",
                    "--dir", str(self.workdir),
                    "--logfile", str(self.workdir / "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Its own session: a Ctrl-C meant for `flareport dev` must not stop Redis before the services.
                start_new_session=True,
                umask=-1 if self.umask is None else self.umask,
            )  # fmt: skip
            if self._wait_ready(chosen, timeout):
                self.port = chosen
                return
            self.stop()
            if port is not None:
                break
        raise RedisServerError(f"redis-server did not start; see {self.workdir / 'redis.log'}")

    def _wait_ready(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            if _ping(port, self.password):
                return True
            time.sleep(0.02)
        return False

    def stop(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        end_process(process, kill=kill, timeout=10)

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port (clients reconnect to the same URL)."""
        port = self.port
        self.stop(kill=kill)
        self.start(port)


def end_process(process: subprocess.Popen[bytes] | None, *, kill: bool = False, timeout: float = 10.0) -> None:
    """Stop a child server: SIGTERM (or SIGKILL when asked), and SIGKILL if it outlives ``timeout``."""
    if process is None or process.poll() is not None:
        return
    if kill:
        process.kill()
    else:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def _ping(port: int, password: str | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            if password is not None:
                sock.sendall(_command("AUTH", password))
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(_command("PING"))
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
