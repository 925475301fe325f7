"""How claims are stored in a hostname's claims hash, and read back. Pure, no I/O.

A claim's value is ``<time ms>|<owner>|<claim JSON>``. The prefix is written by ``lua/write_claims.lua`` from the
server's own arguments: the claim order ("first claim wins") and the owner never come from the JSON, which
carries agent-controlled data (labels, Access custom rules) and is never pattern-matched. A value read back takes
its ``claimed_at`` from the prefix, whatever the JSON says.

The hash may also hold ``ASSIGNED``: an admin's assignment of the hostname to one owner (``agent:<id>`` or
``tunnel:<id>``). Claim ids always start with ``agent:`` or ``manual:``, so the field cannot collide with one, and
an agent cannot write it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from flareport_common.replies import text
from flareport_reconciler.resolution import Claim

ASSIGNED = "!assigned"

_claim_decoder = msgspec.json.Decoder(Claim)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class HostnameClaims:
    """One hostname's claims hash, decoded."""

    claims: list[Claim]
    assigned: str | None = None  # the owner an admin assigned the hostname to


def time_ms(claimed_at: float) -> int:
    return int(claimed_at * 1000)


def encode_value(claim: Claim) -> bytes:
    """The JSON part of a stored claim (the script adds the prefix)."""
    return _encoder.encode(claim)


def decode_value(raw: bytes | str) -> Claim:
    """A stored claim, its time taken from the prefix.

    A bare JSON value was written before claims had a prefix: it is read as it was then (its own time), so an
    upgrade unpublishes nothing; the next write of that claim (any change of its container) gives it a prefix.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if data.startswith(b"{"):
        return _claim_decoder.decode(data)
    at, _, rest = data.partition(b"|")
    _, _, body = rest.partition(b"|")
    claim = _claim_decoder.decode(body)
    return msgspec.structs.replace(claim, claimed_at=int(at) / 1000)


def decode_hash(raw: dict[Any, Any] | list[Any]) -> HostnameClaims:
    """A claims hash as HGETALL returns it (a dict), or as a script does (a flat field, value list)."""
    pairs: Iterable[tuple[Any, Any]] = raw.items() if isinstance(raw, dict) else zip(raw[0::2], raw[1::2], strict=True)
    claims: list[Claim] = []
    assigned: str | None = None
    for name, value in pairs:
        if text(name) == ASSIGNED:
            assigned = text(value) or None
            continue
        claims.append(decode_value(value))
    return HostnameClaims(claims, assigned)
