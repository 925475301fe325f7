"""The slot arithmetic of the Redis Cluster check agrees with Redis' own (CLUSTER KEYSLOT values from its docs)."""

from __future__ import annotations

from fptest.slotcheck import crc16, key_slot, shape


def test_crc16_is_the_xmodem_variant_redis_cluster_uses() -> None:
    assert crc16(b"123456789") == 0x31C3


def test_key_slots_match_redis() -> None:
    assert key_slot(b"somekey") == 11058
    assert key_slot(b"foo") == 12182
    assert key_slot(b"{user1000}.following") == key_slot(b"{user1000}.followers") == key_slot(b"user1000")
    # An empty tag does not count: the whole key is hashed.
    assert key_slot(b"foo{}{bar}") == crc16(b"foo{}{bar}") % 16384
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")


def test_shapes_drop_what_varies_between_runs() -> None:
    assert shape("fp:{agent:agt_1f2e}:record", "fp:") == "{agent:*}:record"
    assert shape("fp:claims:app.example.test", "fp:") == "claims:*"
    assert shape("fp:stream:events", "fp:") == "stream:events"
