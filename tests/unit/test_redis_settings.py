"""Redis Sentinel and data-node settings: parsed with the names other Redis clients use, one clear line for a bad
value, secrets kept out of logs, and no change at all when no Sentinel is configured."""

from __future__ import annotations

import pytest

from flareport_common.errors import SettingsError
from flareport_common.redisconn import SentinelRedis, connect
from flareport_common.redissettings import RedisNodes
from flareport_common.settings import load_reconciler, secret_values

SENTINELS = {"REDIS_SENTINELS": "s1.internal:26380, s2.internal,[::1]:26381"}


def test_without_sentinels_nothing_changes() -> None:
    common = load_reconciler({"REDIS_URL": "redis://:pw@redis:6379/0"}).common
    assert common.redis_nodes == RedisNodes(), "no Redis variable set should leave the defaults"
    assert common.redis_nodes.wait_replicas == 0, "a single server has no replica to wait for"


def test_sentinels_are_parsed_with_default_port_and_master_name() -> None:
    nodes = load_reconciler(SENTINELS).common.redis_nodes
    assert nodes.sentinels == (("s1.internal", 26380), ("s2.internal", 26379), ("::1", 26381))
    assert nodes.master_name == "mymaster", "Redis' own default master name should be the default"
    assert nodes.wait_replicas == 1, "with Sentinel, writes that must not be lost should wait for one replica"


def test_sentinel_and_data_node_credentials_are_secrets() -> None:
    env = {
        **SENTINELS,
        "REDIS_SENTINEL_MASTER": "flareport",
        "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        "REDIS_PASSWORD": "data-secret",
        "REDIS_SENTINEL_TLS": "true",
        "REDIS_TLS": "yes",
        "REDIS_TLS_CA_FILE": "/etc/ssl/redis-ca.pem",
    }
    settings = load_reconciler(env)
    nodes = settings.common.redis_nodes
    assert (nodes.master_name, nodes.sentinel_tls, nodes.tls, nodes.tls_ca_file) == (
        "flareport",
        True,
        True,
        "/etc/ssl/redis-ca.pem",
    )
    assert {"sentinel-secret", "data-secret"} <= set(secret_values(settings)), "passwords must be redacted in logs"
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "host:notaport"}, "REDIS_SENTINELS: expected host:port items, got 'host:notaport'"),
        ({"REDIS_SENTINELS": "user@host:26379"}, "REDIS_SENTINELS: expected host:port items"),
        ({**SENTINELS, "REDIS_URL": "unix:///run/redis.sock"}, "REDIS_URL: a unix:// socket cannot be combined"),
        ({**SENTINELS, "REDIS_SENTINEL_MASTER": "my master"}, "REDIS_SENTINEL_MASTER: a master name has no spaces"),
        ({"REDIS_WAIT_REPLICAS": "-1"}, "REDIS_WAIT_REPLICAS: must be at least 0"),
        ({"REDIS_SENTINEL_TLS": "maybe"}, "REDIS_SENTINEL_TLS: expected true/false"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        load_reconciler(env)


async def test_the_factory_picks_the_sentinel_client_only_with_sentinels() -> None:
    single = connect(load_reconciler({"REDIS_URL": "redis://:pw@redis:6379/2"}).common)
    sentinel = connect(load_reconciler({**SENTINELS, "REDIS_URL": "redis://:pw@ignored:6379/2"}).common)
    try:
        assert not isinstance(single, SentinelRedis)
        assert single.connection_pool.connection_kwargs["host"] == "redis"
        assert isinstance(sentinel, SentinelRedis)
        kwargs = sentinel.connection_pool.connection_kwargs
        # The URL's password and database still apply to the data nodes the Sentinels name.
        assert (kwargs["password"], kwargs["db"]) == ("pw", 2)
    finally:
        await single.aclose()
        await sentinel.aclose()
