"""An admin's override of a container rule (``rule_override_set``) and its revert to labels
(``rule_override_cleared``).

The override is kept in the hostname's claims hash under ``claimstore.OVERRIDE + <path>``, next to the claims it
applies to, for the reason the admin's assignment is kept there: every resolution and compare-and-set of the
hostname sees it, so a refresh racing the change re-reads instead of writing a document from before it. It applies
to whichever container publishes that hostname + path (a recreated container, another container taking the name
over), because it describes the published rule, not one container. Agents cannot reach it: their events only ever
write claim fields (``agent:...``), and the API takes these intents only from the admin.
"""

from __future__ import annotations

import msgspec
import structlog

from flareport_common.messages.intents import RuleOverrideCleared, RuleOverrideSet
from flareport_reconciler.claimstore import OVERRIDE
from flareport_reconciler.spine import Spine

log = structlog.get_logger("flareport.reconciler.overrides")
_encoder = msgspec.json.Encoder()


class RuleOverrides:
    def __init__(self, spine: Spine) -> None:
        self.r = spine

    async def set(self, message: RuleOverrideSet) -> None:
        await self._write(message.hostname, message.path, _encoder.encode(message.override))

    async def cleared(self, message: RuleOverrideCleared) -> None:
        await self._write(message.hostname, message.path, None)

    async def _write(self, hostname: str, path: str | None, value: bytes | None) -> None:
        name = hostname.strip().rstrip(".").lower()
        field = OVERRIDE + (path or "")
        tx = self.r.redis.pipeline(transaction=True)
        if value is None:
            tx.hdel(self.r.keys.hostname_claims(name), field)
        else:
            tx.hset(self.r.keys.hostname_claims(name), field, value)
        marks = self.r.claims.mark_dirty(tx, [name])
        await tx.execute()
        log.info("reconciler.rule_override", rule=name + (path or ""), reverted=value is None)
        await self.r.converge(marks)
