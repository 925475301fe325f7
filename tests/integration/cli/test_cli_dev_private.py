"""``flareport dev`` (``make run``) keeps its files to its user and its Redis behind a password.

The control plane is started for real (redis-server with AOF, the emulator, api, reconciler, dns-worker) in a state
directory an older release left open; afterwards every directory under it is 0700 and every file 0600 (including
Redis's AOF and RDB, which hold tunnel tokens), the local Redis refuses clients without the password, and the
password is on no command line.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from flareport_cli.dev import DevStack, make_private
from flareport_cli.localredis import free_port

# Variables of the developer's shell that would point the stack elsewhere than at its own processes.
_FOREIGN = ("REDIS_URL", "MASTER_API_KEY", "DOCKER_HOST", "CLOUDFLARE_", "CF_", "FLAREPORT_", "DOCKFLARE_", "AGENT_")
SECRET = "tunnel-token-that-must-stay-private"


def _environ() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    return {**environ, "LOG_FORMAT": "json", "LOG_LEVEL": "warning"}


@pytest.fixture
def stacks() -> Iterator[list[DevStack]]:
    started: list[DevStack] = []
    yield started
    for stack in started:
        stack.stop()


def start(stacks: list[DevStack], data: Path) -> DevStack:
    stack = DevStack(data, api_port=free_port(), echo=False, environ=_environ())
    stacks.append(stack)
    stack.start(agent=False)
    return stack


def raw_command(port: int, *args: str) -> bytes:
    """One command on a fresh connection that never authenticated; the server's raw answer."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(256)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def open_ones(root: Path) -> dict[str, str]:
    """Everything under ``root`` that is not exactly 0700 (directories) or 0600 (files)."""
    wrong: dict[str, str] = {}
    for name, mode in modes(root).items():
        path = root / name
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            wrong[name] = oct(mode)
    return wrong


def wait_bgsave(client: redis.Redis) -> None:
    deadline = time.monotonic() + 30
    while client.info("persistence")["rdb_bgsave_in_progress"]:
        assert time.monotonic() < deadline, "BGSAVE did not finish within 30s"
        time.sleep(0.05)


def test_dev_redis_requires_a_generated_password_kept_off_the_command_line(
    stacks: list[DevStack], tmp_path: Path
) -> None:
    data = tmp_path / "state"
    stack = start(stacks, data)
    assert stack.redis is not None
    url = urlsplit(stack.env["REDIS_URL"])
    assert url.port is not None
    assert raw_command(url.port, "PING").startswith(b"-NOAUTH"), "an unauthenticated client is refused"
    assert raw_command(url.port, "GET", "x").startswith(b"-NOAUTH")
    password_file = data / "redis-password"
    password = password_file.read_text().strip()
    assert len(password) >= 32 and url.password == password, "the services get the generated password"
    assert raw_command(url.port, "AUTH", "wrong-password").startswith(b"-WRONGPASS")
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert client.ping()

    assert stack.redis._process is not None
    cmdline = Path(f"/proc/{stack.redis._process.pid}/cmdline").read_bytes()
    assert password.encode() not in cmdline, "the password must not be visible in ps"
    assert f"requirepass {password}" in (data / "redis" / "redis.conf").read_text()
    assert password not in stack.banner(), "the banner names the password's file, not the password"

    # Reused across restarts: the same password, and the data written with it still there.
    client.set("kept", "1")
    client.close()
    stack.stop()
    again = start(stacks, data)
    assert urlsplit(again.env["REDIS_URL"]).password == password
    client = redis.Redis.from_url(again.env["REDIS_URL"])
    assert client.get("kept") == b"1"
    client.close()


def test_dev_state_dir_is_0700_and_every_file_0600(stacks: list[DevStack], tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # what a developer's shell usually has
    try:
        data = tmp_path / "state"
        # What an older release left behind: an open directory, an open key file and an open AOF directory.
        (data / "redis").mkdir(parents=True)
        os.chmod(data, 0o755)  # noqa: S103 - the open directory under test
        os.chmod(data / "redis", 0o755)  # noqa: S103
        (data / "master-key").write_text("old-master-key-0123456789abcdef\n")
        os.chmod(data / "master-key", 0o644)
        stack = start(stacks, data)
        client = redis.Redis.from_url(stack.env["REDIS_URL"])
        client.set("secret", SECRET)  # written to the AOF at once (appendfsync always)
        client.bgsave()
        wait_bgsave(client)
        client.close()
    finally:
        os.umask(old_umask)

    assert open_ones(data) == {}
    assert stack.master_key == "old-master-key-0123456789abcdef", "the existing key is kept, only its mode changes"
    names = set(modes(data))
    assert {"redis-password", "master-key", "admin-password", "cloudflare-seed.json", "redis/redis.conf"} <= names
    assert "redis/dump.rdb" in names and any(n.startswith("redis/appendonlydir/") for n in names), names
    assert any(SECRET.encode() in (data / n).read_bytes() for n in names if n.startswith("redis/appendonlydir/"))


def test_make_private_tightens_only_what_is_ours_and_follows_no_link(tmp_path: Path) -> None:
    root = tmp_path / "state"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file").write_text("x")
    os.chmod(root / "sub" / "file", 0o664)
    os.chmod(root / "sub", 0o775)  # noqa: S103 - the open directory under test
    outside = tmp_path / "outside"
    outside.write_text("not ours to change")
    os.chmod(outside, 0o644)
    (root / "link").symlink_to(outside)
    changed = make_private(root)
    assert set(changed) >= {root / "sub", root / "sub" / "file"}
    assert stat.S_IMODE(os.stat(root / "sub").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "sub" / "file").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o644, "a symlink's target outside is not touched"
