"""Agent keys carry a proof of issue: restorable after a loss of data, impossible to forge or move."""

from __future__ import annotations

import string

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
