"""Commands packed in C (``redispack``): byte for byte what redis-py's own packing sends, and redis-py's answer to
what it refuses; every way of reaching Redis gets a packing connection class."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
from redis.exceptions import DataError

from flareport_common.redisconn import connect
from flareport_common.redispack import PackedConnection, packed
from flareport_common.settings import load_reconciler


class Level(enum.IntEnum):
    HIGH = 2


COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "fp:key"),
    ("XINFO GROUPS", "fp:stream"),  # redis-py splits a command name given with its subcommand
    (b"CLIENT SETNAME", b"reconciler"),
    ("EVALSHA", "a" * 40, 3, "k1", "k2", "k3", 0.1, -0.0, 1e100, float("nan"), 2**70, -5, b"\x00\xff" * 400),
    ("HSET", "fp:h", *[x for i in range(40) for x in (f"field{i}", "välue " * i)]),
    ("XADD", "fp:s", "MAXLEN", "~", 100_000, "*", "data", memoryview(b"payload" * 2000)),
    ("SET", "k", Level.HIGH),  # an int subclass hiredis refuses: redis-py's own packing answers
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_bytes_are_redis_pys(command: tuple[Any, ...]) -> None:
    expected = b"".join(bytes(chunk) for chunk in Connection().pack_command(*command))
    assert b"".join(PackedConnection().pack_command(*command)) == expected


@pytest.mark.parametrize("value", [True, None, "\ud800"])
def test_what_redis_py_refuses_is_refused_as_it_refuses_it(value: Any) -> None:
    with pytest.raises((DataError, UnicodeError)) as plain:
        Connection().pack_command("SET", "k", value)
    with pytest.raises(plain.type):
        PackedConnection().pack_command("SET", "k", value)


def test_another_encoding_is_packed_by_redis_py() -> None:
    latin = PackedConnection(encoding="latin-1")
    assert b"".join(latin.pack_command("SET", "k", "é")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("unix:///run/redis.sock", UnixDomainSocketConnection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
    ],
)
def test_every_url_gets_a_packing_class_of_its_kind(url: str, base: type[Any]) -> None:
    client = connect(load_reconciler({"REDIS_URL": url}).common)
    chosen = client.connection_pool.connection_class
    assert chosen is packed(base) and issubclass(chosen, base) and chosen is not base


def test_sentinel_connections_pack_in_c_too() -> None:
    for tls in ("false", "true"):
        env = {"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "main", "REDIS_TLS": tls}
        client = connect(load_reconciler(env).common)
        base = SentinelManagedSSLConnection if tls == "true" else SentinelManagedConnection
        assert client.connection_pool.connection_class is packed(base) is not base
