"""The agent's last-known state on disk (AGENT_DATA_DIR/state.json): what it needs to keep serving without a master.

Holds the agent id, the key from the last ``rotate_key`` (with a hash of the configured key it replaced, so an
operator who sets a new FLAREPORT_API_KEY wins over a stale rotated one), the highest event sequence number the
master accepted, the last tunnel id and token, and whether cloudflared should run. After a restart with the master
down the agent starts cloudflared again from here.

The file holds secrets: it is written with mode 0600, atomically (temporary file in the same directory, fsync,
rename, fsync of the directory), so a crash leaves either the old or the new file, never a torn one. It is rewritten
only when something in it changes — not on every heartbeat (a DockFlare weakness).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import msgspec

STATE_FILE = "state.json"


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


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class StateStore:
    def __init__(self, data_dir: str | Path) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / STATE_FILE

    def load(self) -> AgentState:
        """The saved state, or a fresh one when there is none. A corrupt file is kept aside, not fatal."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return AgentState()
        try:
            return msgspec.json.decode(raw, type=AgentState)
        except msgspec.DecodeError:
            self.path.replace(self.path.with_suffix(".corrupt"))
            return AgentState()

    def save(self, state: AgentState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
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


def effective_key(state: AgentState, configured: str) -> str:
    """The key to use: a rotated key derived from the configured one, else the configured key."""
    if state.rotated_key and state.rotated_from == key_hash(configured):
        return state.rotated_key
    return configured


def remember_command(state: AgentState, command_id: str, result: dict[str, object], *, keep: int = 200) -> None:
    state.done_commands[command_id] = result
    while len(state.done_commands) > keep:
        del state.done_commands[next(iter(state.done_commands))]
