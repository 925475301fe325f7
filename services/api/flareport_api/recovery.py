"""When an agent key may be restored from its proof: only on positive evidence that Redis lost its data.

A key's proof (``keyproof``) shows that the key was minted under the agent-key secret, not that this data set
ever issued it: whoever holds the secret can mint keys. So the proof alone restores nothing. The evidence is the
data set's marker, ``Keys.data_epoch``:

* ``sealed:<t>`` is written with the first agent key a data set issues (``KeyStore.create``). While it is there,
  Redis did not lose its data, and a key missing from Redis is simply unknown (401), whatever its proof.
* When a key with a valid proof is presented and the marker is *absent*, Redis lost everything it held (the
  marker is never deleted otherwise). If Redis also holds no agent key at all, the marker becomes ``open:<t>``:
  keys are restored from their proof until ``t + window``, then the state reads as sealed again. If Redis does
  hold keys, they were issued by a release that wrote no marker: the data set is sealed instead.

Restores are also counted per minute across replicas (over the limit: 429 with Retry-After, the agent retries),
counted in a metric and logged as warnings, and refused for an agent that still has an active key in Redis (an
agent that lost nothing needs no restore, so a minted key naming it is refused, never bound to it) and for a key id
that Redis already holds under another key (a key id is issued once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter

RESTORES_REFUSED = Counter(
    "flareport_api_agent_key_restores_refused_total",
    "Keys with a valid proof but no record that were not restored, by reason (data_present: Redis did not lose its "
    "data, so the key was minted with the agent-key secret or deleted; key_id_taken; agent_has_key; rate).",
    ["reason"],
)

State = Literal["sealed", "open"]
SEALED: State = "sealed"
OPEN: State = "open"


@dataclass(frozen=True, slots=True)
class Epoch:
    state: State
    since: float  # epoch seconds

    def encode(self) -> str:
        return f"{self.state}:{self.since:.3f}"

    @classmethod
    def decode(cls, raw: str | None) -> Epoch | None:
        if raw is None:
            return None
        state, _, since = raw.partition(":")
        try:
            at = float(since)
        except ValueError:
            at = 0.0
        # Anything unreadable is sealed: a marker we cannot read is never evidence of a loss.
        return cls(OPEN if state == OPEN else SEALED, at)


def marker_for_missing(keys_in_redis: int, now: float) -> Epoch:
    """The marker to write when a proven key meets a data set without one (see the module docstring)."""
    return Epoch(OPEN if keys_in_redis == 0 else SEALED, now)


def may_restore(epoch: Epoch, now: float, window_s: float) -> bool:
    return epoch.state == OPEN and now - epoch.since < window_s
