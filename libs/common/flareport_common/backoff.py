"""Capped exponential backoff with full jitter, for reconnect loops and retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    attempts: int = field(default=0, init=False)

    def next(self) -> float:
        """The delay before the next attempt: uniform in [cap/2, cap] so replicas do not retry in lockstep."""
        cap = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return random.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.attempts = 0
