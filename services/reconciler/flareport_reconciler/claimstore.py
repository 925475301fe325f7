"""How claims are stored in a hostname's claims hash, and read back. Pure, no I/O.

A claim's value is ``<time ms>|<owner>|<claim JSON>``. The prefix is written by ``lua/write_claims.lua`` from the
server's own arguments: the claim order ("first claim wins") and the owner never come from the JSON, which
carries agent-controlled data (labels, Access custom rules) and is never pattern-matched. A value read back takes
its ``claimed_at`` from the prefix, whatever the JSON says.

The hash may also hold ``ASSIGNED``: an admin's assignment of the hostname to one owner (``agent:<id>`` or
``tunnel:<id>``). Claim ids always start with ``agent:`` or ``manual:``, so the field cannot collide with one, and
an agent cannot write it.

In the same way, ``OVERRIDE + <path>`` holds an admin's override of what container labels say for that path
(``RuleOverride`` JSON; written by ``overrides``). It is kept apart from the claims it applies to: the stored claims
stay exactly what the agent reported, so reverting is deleting the field, and the override is applied only where
claims are resolved (``HostnameClaims.effective``), never written back into a claim.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from flareport_common.messages.rules import AccessSpec, RuleOverride
from flareport_common.replies import text
from flareport_reconciler.resolution import Claim

ASSIGNED = "!assigned"
OVERRIDE = "!override:"

_claim_decoder = msgspec.json.Decoder(Claim)
_override_decoder = msgspec.json.Decoder(RuleOverride)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class HostnameClaims:
    """One hostname's claims hash, decoded."""

    claims: list[Claim]
    assigned: str | None = None  # the owner an admin assigned the hostname to
    overrides: dict[str, RuleOverride] = field(default_factory=dict)  # path ("" for none) -> the admin's override

    @property
    def effective(self) -> list[Claim]:
        """The claims as they are resolved: containers' claims with the admin's override of their path applied
        (manual rules are the admin's own and are edited directly)."""
        if not self.overrides:
            return self.claims
        return [self._applied(c) if c.manual_rule_id is None else c for c in self.claims]

    def _applied(self, claim: Claim) -> Claim:
        override = self.overrides.get(claim.rule.path or "")
        if override is None or not override.fields():
            return claim
        rule = claim.rule
        rule = msgspec.structs.replace(
            rule,
            service=rule.service if override.service is None else override.service,
            origin=rule.origin if override.origin is None else override.origin,
            access=rule.access if override.access is None else _access(override.access),
        )
        return msgspec.structs.replace(claim, rule=rule, overridden=override.fields())


def _access(spec: AccessSpec) -> AccessSpec | None:
    # An empty spec is the admin saying "no Access app": the rule then carries none, as without labels.
    return None if spec == AccessSpec() else spec


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
    overrides: dict[str, RuleOverride] = {}
    for raw_name, value in pairs:
        name = text(raw_name)
        if name == ASSIGNED:
            assigned = text(value) or None
            continue
        if name.startswith(OVERRIDE):
            overrides[name.removeprefix(OVERRIDE)] = _override_decoder.decode(value)
            continue
        if name.startswith("!"):
            # An admin field of a later release (no claim id starts with "!"): not a claim, and during a rolling
            # upgrade not a reason to fail every refresh of the hostname.
            continue
        claims.append(decode_value(value))
    return HostnameClaims(claims, assigned, overrides)
