"""Redis commands packed in C (hiredis) instead of in Python: the same bytes, a fraction of the CPU.

redis-py's asyncio connections pack every command in Python (an encode and a join per argument): in the
20,000-hostname run that was about an eighth of the reconciler's CPU samples and a twelfth of the API's. hiredis,
a dependency already (``redis[hiredis]``, the reply parser), packs a command in C, 3-7 times faster measured here
on the commands the services send (a script call with ten keys, a forty-field HSET, an XADD, a GET).

The bytes are redis-py's: the first argument is split on spaces as redis-py does (``"XINFO GROUPS"``), str is
encoded as UTF-8, and ints and floats are written as redis-py writes them (``repr``: ``0.1``, ``1e+100``,
``nan``). Anything hiredis refuses (``bool``, ``None``, an ``int`` subclass, a lone surrogate) and any connection
told another encoding go through redis-py's own packing, which then answers exactly as before (a
``DataError`` for a bool). redis-py's sync client makes the same choice when hiredis is installed.

The same connections also send without a task of their own. redis-py bounds each write by the socket timeout
with ``asyncio.wait_for``, which on Python 3.11 runs the write as a separate task: a task, two more turns of the
event loop and a timer for every command, about a sixth of a round trip's CPU. ``send_packed_command`` keeps the
bound as a timeout around redis-py's own write (``asyncio.timeout``, a timer and no task), which then runs with no
timeout of its own; when the bound is hit the caller gets redis-py's ``TimeoutError("Timeout writing to socket")``
and the connection is dropped, as before.
"""

from __future__ import annotations

import asyncio
import codecs
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Packed:
    """Mixed in before a redis-py connection class: ``pack_command`` in C where the bytes are the same."""

    _utf8_strict: bool  # the connection encodes str as hiredis does (set at its first command)
    socket_timeout: float | None

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        base: Any = super()
        timeout = self.socket_timeout
        if not timeout:
            return await base.send_packed_command(command, check_health)  # type: ignore[no-any-return]
        try:
            async with asyncio.timeout(timeout):
                # Only this coroutine uses the connection until the command is answered (the pool hands it to one
                # caller), so nothing else reads the timeout meanwhile. The health check's PING and a reconnect's
                # handshake, which redis-py may run on the way, are within the same bound.
                self.socket_timeout = None
                try:
                    await base.send_packed_command(command, check_health)
                finally:
                    self.socket_timeout = timeout
        except TimeoutError:
            # redis-py's own write dropped the connection when it was cancelled (its ``BaseException`` handler).
            raise RedisTimeoutError("Timeout writing to socket") from None

    def pack_command(self, *args: Any) -> list[bytes]:
        base: Any = super()
        try:
            same = self._utf8_strict
        except AttributeError:
            same = self._utf8_strict = _utf8_strict(getattr(self, "encoder", None))
        if not same:
            return list(base.pack_command(*args))
        head = args[0]
        if isinstance(head, str):
            args = (*head.encode().split(), *args[1:])
        elif isinstance(head, bytes) and b" " in head:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except (TypeError, UnicodeError):
            return list(base.pack_command(*args))


def _utf8_strict(encoder: Any) -> bool:
    try:
        return codecs.lookup(encoder.encoding).name == "utf-8" and encoder.encoding_errors == "strict"
    except (AttributeError, LookupError):
        return False


class PackedConnection(_Packed, Connection):
    pass


class PackedUnixConnection(_Packed, UnixDomainSocketConnection):
    pass


class PackedSSLConnection(_Packed, SSLConnection):
    pass


class PackedSentinelConnection(_Packed, SentinelManagedConnection):
    pass


class PackedSentinelSSLConnection(_Packed, SentinelManagedSSLConnection):
    pass


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: PackedConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
    SSLConnection: PackedSSLConnection,
    SentinelManagedConnection: PackedSentinelConnection,
    SentinelManagedSSLConnection: PackedSentinelSSLConnection,
}


def packed(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """The class that packs in C for redis-py's ``connection_class`` (itself when it is not one of redis-py's)."""
    return _PACKED.get(connection_class, connection_class)
