"""The agent's last-known state on disk (AGENT_DATA_DIR/state.json): what it needs to keep serving without a master.

Holds the agent id, the key from the last ``rotate_key`` (with a hash of the configured key it replaced, so an
operator who sets a new FLAREPORT_API_KEY wins over a stale rotated one), the highest event sequence number the
master accepted, the last tunnel id and token, and whether cloudflared should run. After a restart with the master
down the agent starts cloudflared again from here.

The file holds secrets (the tunnel token, a rotated key): the data directory is created 0700 (an existing one of
ours that is more open is tightened, with a warning; one of another user's is only warned about), and the file is
written with mode 0600, atomically (temporary file in the same directory, fsync,
rename, fsync of the directory), so a crash leaves either the old or the new file, never a torn one. It is rewritten
only when something in it changes — not on every heartbeat (a DockFlare weakness).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

import msgspec

from flareport_common.logs import add_secret, get_logger

log = get_logger("flareport.agent.state")
STATE_FILE = "state.json"
DIR_MODE = 0o700
FILE_MODE = 0o600


class AgentState(msgspec.Struct, kw_only=True):
    agent_id: str | None = None
    # A key delivered by rotate_key, and the hash of the configured key it replaced.
    rotated_key: str | None = None
    rotated_from: str | None = None
    last_seq: int = 0
    tunnel_id: str | None = None
    tunnel_token: str | None = None
    tunnel_image: str | None = None
    tunnel_wanted: bool = False
    # Ids of the most recent commands executed, with their results, so a redelivered command is only acked again.
    done_commands: dict[str, dict[str, object]] = msgspec.field(default_factory=dict)


def remembered(state: AgentState) -> AgentState:
    """The secrets the state holds (a rolled key, the tunnel token) are never to appear in a log line."""
    add_secret(state.rotated_key)
    add_secret(state.tunnel_token)
    return state


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class StateStore:
    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / STATE_FILE

    def prepare(self) -> None:
        """Create the data directory 0700, or tighten it (and the files in it) when it is ours and more open."""
        if not self.dir.exists():
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                self.dir.mkdir(mode=DIR_MODE)
        _tighten(self.dir, DIR_MODE)
        for entry in self.dir.iterdir():
            if entry.is_file() and not entry.is_symlink():
                _tighten(entry, FILE_MODE)

    def load(self) -> AgentState:
        """The saved state, or a fresh one when there is none. A corrupt file is kept aside, not fatal."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return AgentState()
        try:
            return remembered(msgspec.json.decode(raw, type=AgentState))
        except msgspec.DecodeError:
            corrupt = self.path.with_suffix(".corrupt")
            self.path.replace(corrupt)
            with contextlib.suppress(OSError):
                corrupt.chmod(FILE_MODE)
            return AgentState()

    def save(self, state: AgentState) -> None:
        remembered(state)
        if not self.dir.is_dir():
            self.prepare()
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by the umask; the secret must not be group-readable
            os.write(fd, msgspec.json.encode(state))
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):
                os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _tighten(path: Path, mode: int) -> None:
    """Give ``path`` exactly ``mode`` when it is ours and more open; warn when it is more open and not ours."""
    info = path.lstat()
    current = stat.S_IMODE(info.st_mode)
    if current & ~mode == 0:
        return
    if info.st_uid != os.geteuid():
        log.warning(
            "state.too_open",
            path=str(path),
            mode=oct(current),
            owner_uid=info.st_uid,
            hint="agent data is readable by others and not owned by this user; restrict it",
        )
        return
    path.chmod(mode)
    log.warning("state.restricted", path=str(path), mode=oct(current), now=oct(mode))


def effective_key(state: AgentState, configured: str) -> str:
    """The key to use: a rotated key derived from the configured one, else the configured key."""
    if state.rotated_key and state.rotated_from == key_hash(configured):
        return state.rotated_key
    return configured


def remember_command(state: AgentState, command_id: str, result: dict[str, object], *, keep: int = 200) -> None:
    state.done_commands[command_id] = result
    while len(state.done_commands) > keep:
        del state.done_commands[next(iter(state.done_commands))]
