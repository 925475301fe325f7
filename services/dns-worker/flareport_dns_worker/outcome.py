"""What one sync of a target did: the writes it made and the per-rule problems it left for the result."""

from __future__ import annotations

from dataclasses import dataclass, field

from flareport_common.messages.cfresults import CfError, CfNote


class Reread(Exception):
    """Cloudflare's state is not what our observed copy says (a conflict we did not expect, an ambiguous
    write): read it again and plan once more before reporting anything.
    """


@dataclass(slots=True)
class Outcome:
    writes: int = 0
    errors: list[CfError] = field(default_factory=list)
    # Adoptions made (shown on the rules): reported only once their write went through.
    notes: list[CfNote] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.writes += other.writes
        self.errors.extend(other.errors)
        self.notes.extend(other.notes)
