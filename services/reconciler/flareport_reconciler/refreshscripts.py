"""The refresh's Lua scripts (``lua/read_hostnames.lua``, ``write_refresh.lua``, ``finish_refresh.lua``), one typed
wrapper each: the only code that knows their KEYS/ARGV order.

A refresh reads its hostnames with one script, then writes with a compare-and-set over everything it read and
finishes with a second compare-and-set (``refresh`` explains why). Both compare a hostname's claims hash with
what was read by (claim id, SHA-1 of the stored value), so the claims are not sent back whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from flareport_common import lua
from flareport_common.keys import Keys
from flareport_reconciler.scripts import DocumentWrite, Written

_READ_HOSTNAMES = lua.load("flareport_reconciler", "read_hostnames")
_WRITE_REFRESH = lua.load("flareport_reconciler", "write_refresh")
_FINISH_REFRESH = lua.load("flareport_reconciler", "finish_refresh")


def _read_hostnames(keys: Keys, hostnames: Sequence[str]) -> tuple[list[str], list[Any]]:
    key_list = [keys.dirty_hostnames]
    for hostname in hostnames:
        key_list += [keys.hostname_claims(hostname), keys.hostname_state(hostname)]
    return key_list, list(hostnames)


def queue_read_hostnames(pipe: aioredis.client.Pipeline, keys: Keys, hostnames: Sequence[str]) -> None:
    """``read_hostnames.lua`` queued in a pipeline or transaction; its reply is what ``read_hostnames`` returns."""
    _READ_HOSTNAMES.eval(pipe, *_read_hostnames(keys, hostnames))


async def read_hostnames(redis: aioredis.Redis, keys: Keys, hostnames: Sequence[str]) -> list[Any]:
    """``read_hostnames.lua``: per hostname, [its claims as a flat field, value list, its state or None, its dirty
    mark's score or None]."""
    return list(await _READ_HOSTNAMES.eval(redis, *_read_hostnames(keys, hostnames)))


def _claim_list(claims: Sequence[Any]) -> list[Any]:
    """The claims read (a flat field, value list) as ``claims_match.lua`` takes them: their number, then (id,
    SHA-1 of the stored value) per claim."""
    fields, values = claims[0::2], claims[1::2]
    args: list[Any] = [len(fields)]
    for name, value in zip(fields, values, strict=True):
        data = value if isinstance(value, bytes) else str(value).encode()
        args += [name, hashlib.sha1(data, usedforsecurity=False).hexdigest()]
    return args


@dataclass(frozen=True, slots=True)
class HostnameWrite:
    """One hostname of a refresh's compare-and-set: what was read of it, and its state to write."""

    hostname: str
    score_read: bytes | None  # its dirty mark's score, None when it had none
    state_read: bytes | None
    claims_read: Sequence[Any]  # its claims hash as read, a flat field, value list
    state_write: bytes  # b"" to leave the state as it is, b"-" to delete it


async def write_refresh(
    redis: aioredis.Redis, keys: Keys, hosts: Sequence[HostnameWrite], documents: Sequence[DocumentWrite], seed: int
) -> Written:
    """``write_refresh.lua``: write the states and documents only if the marks, states, claims and documents are
    all still as read; the read-model counter (``seed`` starts it if absent) rises if a document was written."""
    key_list = [keys.rules_index, keys.dirty_hostnames]
    args: list[Any] = [len(hosts), len(documents)]
    for host in hosts:
        key_list += [keys.hostname_claims(host.hostname), keys.hostname_state(host.hostname)]
        args += [host.hostname, host.score_read or b"", host.state_read or b"", host.state_write]
        args += _claim_list(host.claims_read)
    for document in documents:
        key_list.append(keys.rule(document.rule_key))
        args += [document.rule_key, document.read, document.write]
    key_list.append(keys.readmodel_version)
    args.append(seed)
    return Written(int(await _WRITE_REFRESH.eval(redis, key_list, args)))


@dataclass(frozen=True, slots=True)
class HostnameFinish:
    """One hostname of a refresh's finish: what was read of it, the state written and the state once finished."""

    hostname: str
    score_read: bytes | None  # None: leave the mark alone
    claims_read: Sequence[Any]
    state_written: bytes | None  # None: no state
    state_final: bytes | None


async def finish_refresh(redis: aioredis.Redis, keys: Keys, hosts: Sequence[HostnameFinish]) -> int:
    """``finish_refresh.lua``: per hostname, a state still as written becomes the final one, and the dirty mark
    goes if the claims, the mark and the state are still as the refresh left them. Returns the marks removed."""
    key_list = [keys.dirty_hostnames]
    args: list[Any] = [len(hosts)]
    for host in hosts:
        key_list += [keys.hostname_claims(host.hostname), keys.hostname_state(host.hostname)]
        args += [host.hostname, host.score_read or b"", host.state_written or b"", host.state_final or b""]
        args += _claim_list(host.claims_read)
    return int(await _FINISH_REFRESH.eval(redis, key_list, args))
