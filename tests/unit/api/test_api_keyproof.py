"""Agent keys carry a proof of issue: restorable after a loss of data, impossible to forge or move."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flareport_api.keyproof import KeyMinter

SECRET = "s" * 40


def test_a_minted_key_proves_its_id_and_gets_a_stable_agent_id() -> None:
    minter = KeyMinter(SECRET)
    key, key_id = minter.mint()
    proof = minter.verify(key)
    assert proof is not None and proof.key_id == key_id
    assert proof.agent_id == minter.agent_id_for(key_id), "the agent id a first register would give"
    assert KeyMinter(SECRET).agent_id_for(key_id) == proof.agent_id, "the same after a restart"
    assert proof.agent_id.startswith("agt_") and len(proof.agent_id) == 24


def test_a_key_issued_for_an_agent_names_it() -> None:
    minter = KeyMinter(SECRET)
    key, key_id = minter.mint("agt_0123456789abcdef0123")
    proof = minter.verify(key)
    assert proof is not None and (proof.key_id, proof.agent_id) == (key_id, "agt_0123456789abcdef0123")


def test_a_key_cannot_be_moved_to_another_agent() -> None:
    minter = KeyMinter(SECRET)
    key, _ = minter.mint("agt_victim")
    head, _, mac = key.rpartition(".")
    moved = head.replace("agt_victim", "agt_attacker") + "." + mac
    assert minter.verify(moved) is None
    unbound, _ = minter.mint()
    prefix, _, mac = unbound.rpartition(".")
    assert minter.verify(f"{prefix}.agt_attacker.{mac}") is None, "an unbound key's proof does not bind elsewhere"


def test_another_secret_or_an_old_random_key_proves_nothing() -> None:
    key, _ = KeyMinter(SECRET).mint()
    assert KeyMinter("t" * 40).verify(key) is None
    assert KeyMinter(SECRET).verify("fpk_" + "A" * 43) is None
    assert KeyMinter(SECRET).verify("") is None


@given(st.integers(min_value=0), st.sampled_from(string.ascii_letters + string.digits + "-_."))
def test_changing_any_character_breaks_the_proof(position: int, replacement: str) -> None:
    minter = KeyMinter(SECRET)
    key, _ = minter.mint("agt_x")
    index = position % len(key)
    tampered = key[:index] + replacement + key[index + 1 :]
    if tampered != key:
        assert minter.verify(tampered) is None


def test_a_key_is_not_a_function_of_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever holds the secret and knows a key id (no secret: pages, logs, configuration show ids) cannot compute
    the key: 128 random bits of it are in no record and in no id."""
    minter = KeyMinter(SECRET)
    monkeypatch.setattr(secrets, "token_hex", lambda n: "0123456789abcdef")
    first, first_id = minter.mint()
    second, second_id = minter.mint()
    assert first_id == second_id and first != second
    assert minter.verify(first) is not None and minter.verify(second) is not None


def test_keys_of_the_earlier_format_still_verify() -> None:
    def earlier(hex_id: str, agent: str) -> str:
        message = b"flareport agent key\x00" + f"{hex_id}\x00{agent}".encode()
        mac = base64.urlsafe_b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()
        return f"fpk_{hex_id}{'.' + agent if agent else ''}.{mac.rstrip('=')}"

    minter = KeyMinter(SECRET)
    unbound = minter.verify(earlier("0123456789abcdef", ""))
    assert unbound is not None and unbound.key_id == "key_0123456789abcdef"
    bound = minter.verify(earlier("0123456789abcdef", "agt_x"))
    assert bound is not None and bound.agent_id == "agt_x"
