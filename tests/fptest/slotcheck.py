"""The key-slot check Redis Cluster would make, run against a single redis-server.

Redis Cluster refuses a script or a transaction (MULTI/EXEC) whose keys hash to more than one of its 16,384 slots
(CROSSSLOT). ``SlotRecorder`` watches a real server with MONITOR while the whole stack works, groups what it sees
into units — one Lua script with every command the script ran, one MULTI...EXEC block per connection — asks the
server which arguments of each command are keys (``COMMAND GETKEYS``), and computes their slots as Cluster does:
CRC16 (XMODEM) of the key, or of the part between the first ``{`` and the next ``}`` when that part is not empty,
modulo 16,384.

A unit is named so that an allow-list stays stable across runs: a script by its file name (its source, or for
EVALSHA its SHA-1, is compared with the script files), a transaction by the shapes of its keys (the prefix dropped,
a hash tag's value and any key part holding a digit, dot or underscore — ids, hashes, hostnames — replaced by
``*``).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import redis

SLOTS = 16384
_LINE = re.compile(r"^\d+\.\d+ \[(?P<db>\d+) (?P<client>[^\]]+)\] (?P<command>.*)$")
_TAG = re.compile(r"\{([a-z-]+):[^}]*\}")
_EVAL = ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO")
UNKNOWN = "(unknown script)"


def _normal(source: str) -> str:
    """A script's text without what MONITOR's quoting changes (whitespace, escapes, quotes), to recognise it."""
    return re.sub(r"\\[ntr]|[\s\\'\"]", "", source)


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: bytes) -> int:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % SLOTS


def shape(key: str, prefix: str) -> str:
    """A key with what varies between runs replaced by ``*``: ``{agent:agt_1f}:record`` -> ``{agent:*}:record``."""
    key = _TAG.sub(lambda m: "{" + m.group(1) + ":*}", key.removeprefix(prefix))
    return ":".join("*" if re.search(r"[0-9._]", part) and "{" not in part else part for part in key.split(":"))


@dataclass
class Unit:
    """What Cluster would run on one node at once: a script (with what it ran) or a MULTI...EXEC block."""

    kind: str  # "script" or "transaction"
    commands: list[list[str]] = field(default_factory=list)
    name: str = ""
    keys: set[str] = field(default_factory=set)
    scripts: set[str] = field(default_factory=set)  # the scripts it ran (a transaction may run some)

    @property
    def slots(self) -> set[int]:
        return {key_slot(k.encode()) for k in self.keys}

    def shapes(self, prefix: str) -> frozenset[str]:
        return frozenset(shape(k, prefix) for k in self.keys)


class SlotRecorder:
    """MONITOR on ``client``'s server in a thread, from ``start()`` to ``stop()``; then ``units()``."""

    def __init__(self, client: redis.Redis, prefix: str, scripts: Mapping[str, str]) -> None:
        self.client = client
        self.prefix = prefix
        # EVAL names a script by its text, EVALSHA by the SHA-1 of it.
        self.scripts = {_normal(source): name for name, source in scripts.items()}
        self.scripts.update(
            {hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest(): name for name, source in scripts.items()}
        )
        self.lines: list[tuple[str, list[str]]] = []
        self._monitor: redis.client.Monitor | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> SlotRecorder:
        self._monitor = self.client.monitor().__enter__()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._monitor is not None
        connection = self._monitor.connection
        while not self._stopping.is_set():
            try:
                if not connection.can_read(timeout=0.2):
                    continue
                raw = connection.read_response()
            except (redis.RedisError, OSError, ValueError):
                return
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            match = _LINE.match(text)
            if match is None:
                continue
            try:  # MONITOR quotes as sdscatrepr does, which POSIX shell quoting reads back
                self.lines.append((match["client"], shlex.split(match["command"])))
            except ValueError:
                continue

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._monitor is not None:
            self._monitor.connection.disconnect()

    def units(self) -> list[Unit]:
        units: list[Unit] = []
        open_tx: dict[str, Unit] = {}
        current: Unit | None = None  # where the commands a script runs ("lua" lines) belong
        for client, args in self.lines:
            name = args[0].upper()
            if client == "lua":
                if current is not None:
                    current.commands.append(args)
                continue
            current = None
            if name == "MULTI":
                open_tx[client] = Unit("transaction")
            elif name in ("EXEC", "DISCARD"):
                unit = open_tx.pop(client, None)
                if unit is not None and name == "EXEC":
                    units.append(unit)
            elif client in open_tx:  # a script inside MULTI is part of the transaction
                open_tx[client].commands.append(args)
                if name in _EVAL:
                    current = open_tx[client]
                    current.scripts.add(self._script_name(args))
            elif name in _EVAL:
                current = Unit("script", [args], name=self._script_name(args))
                current.scripts.add(current.name)
                units.append(current)
        for unit in units:
            for args in unit.commands:
                unit.keys.update(self._keys_of(args))
            if unit.kind == "transaction":
                unit.name = " ".join(sorted(unit.shapes(self.prefix)))
        return units

    def _script_name(self, args: list[str]) -> str:
        return self.scripts.get(args[1] if args[0].upper().startswith("EVALSHA") else _normal(args[1]), UNKNOWN)

    def _keys_of(self, args: list[str]) -> Iterable[str]:
        try:
            found = self.client.command_getkeys(*args)
        except redis.ResponseError:  # a command without keys (PUBLISH, PING, TIME, ...)
            return []
        return [k.decode() if isinstance(k, bytes) else str(k) for k in found]
