"""Fault injection: make chosen endpoints slow, fail or hang up, deterministically.

Flareport must survive Cloudflare's bad days (5xx, 429 storms, slow answers, resets), and the
tests that prove it need those days on demand.  A :class:`FaultRule` targets an endpoint
(``"POST /zones/{zone_id}/dns_records/batch"``, just the path template for every method, or
``"*"``) and combines:

* ``sequence`` - statuses served to the next matching requests in order, e.g.
  ``[500, 429, 200]``: ``200`` (or ``0``) lets that request through to the real handler and
  ``"drop"`` closes the connection without an answer; once exhausted the rule stops failing;
* ``error_rate`` with ``error_status`` - probability of failing each matching request;
* ``drop_rate`` - probability of closing the connection without answering;
* ``latency_ms`` - added before the request is handled (or failed);
* ``arrival_delay_ms`` - the request reaches "Cloudflare" that much later: a slow path between client and
  Cloudflare (a cold TLS connection, a congested link). It is counted by the rate limits only once it arrives. A
  rule with an arrival delay does nothing else, and the delay acts before anything else (authentication too);
* ``times`` - how many requests the rule may affect before it retires (``None`` = forever);
* ``error_code`` / ``error_message`` / ``error_chain`` - the body of an injected 4xx/5xx: Cloudflare's code and
  message (default 10001 and a generic message) and, optionally, the ``[{code, message}]`` nested in the error's
  ``error_chain``. Tests use them for the answers Cloudflare gives that the emulator does not model by itself:
  a missing token permission (403, 10000 or 9109), Zero Trust not enabled, a DNS error wrapped under 1004.

Probabilities use a random generator seeded from the config, so a failing run can be replayed.
Rules are evaluated in order; the first one that decides to fail wins, latencies add up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["pass", "status", "drop"]


@dataclass
class FaultRule:
    endpoint: str = "*"
    sequence: list[int | str] = field(default_factory=list)
    error_rate: float = 0.0
    error_status: int = 500
    drop_rate: float = 0.0
    latency_ms: float = 0.0
    arrival_delay_ms: float = 0.0
    retry_after: int = 1
    times: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    error_chain: list[dict[str, Any]] = field(default_factory=list)
    fired: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {
            "endpoint",
            "sequence",
            "error_rate",
            "error_status",
            "drop_rate",
            "latency_ms",
            "arrival_delay_ms",
            "retry_after",
            "times",
            "error_code",
            "error_message",
            "error_chain",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        # Copies: a rule pops its sequence, and must not change the caller's lists (or another rule's).
        fields: dict[str, Any] = {
            k: list(data[k]) if isinstance(data[k], list) else data[k] for k in allowed if k in data
        }
        rule = cls(**fields)
        for step in rule.sequence:
            if step != "drop" and (isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= 599):
                raise ValueError(f"sequence steps must be HTTP statuses or 'drop', got {step!r}")
        for name in ("error_rate", "drop_rate"):
            value = getattr(rule, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 400 <= rule.error_status <= 599:
            raise ValueError("error_status must be a 4xx or 5xx status")
        if rule.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        if not isinstance(rule.arrival_delay_ms, int | float) or rule.arrival_delay_ms < 0:
            raise ValueError("arrival_delay_ms must not be negative")
        if rule.arrival_delay_ms and (rule.sequence or rule.error_rate or rule.drop_rate or rule.latency_ms):
            raise ValueError("a rule with arrival_delay_ms must not fail, drop or slow the request too")
        if rule.error_code is not None and (isinstance(rule.error_code, bool) or not isinstance(rule.error_code, int)):
            raise ValueError("error_code must be an integer")
        for link in rule.error_chain:
            if not isinstance(link, dict) or not isinstance(link.get("code"), int) or "message" not in link:
                raise ValueError("error_chain must be a list of {code, message} objects")
        return rule

    def chain(self) -> tuple[tuple[int, str], ...]:
        return tuple((int(link["code"]), str(link["message"])) for link in self.error_chain)

    def matches(self, method: str, template: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        return self.endpoint in {"*", template, f"{method} {template}"}

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "sequence": list(self.sequence),
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "drop_rate": self.drop_rate,
            "latency_ms": self.latency_ms,
            "arrival_delay_ms": self.arrival_delay_ms,
            "retry_after": self.retry_after,
            "times": self.times,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "error_chain": list(self.error_chain),
            "fired": self.fired,
        }


@dataclass(frozen=True)
class FaultDecision:
    action: Action = "pass"
    status: int = 200
    latency_ms: float = 0.0
    retry_after: int = 1
    label: str | None = None
    rule: FaultRule | None = None


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self.rules: list[FaultRule] = []
        self._random = random.Random(seed)

    def set_rules(self, rules: list[FaultRule]) -> None:
        self.rules = rules

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)

    def clear(self) -> None:
        self.rules = []

    def arrival_delay(self, method: str, template: str) -> float:
        """Milliseconds before the request reaches the emulator's counters (the arrival rules that match it)."""
        delay = 0.0
        for rule in self.rules:
            if rule.arrival_delay_ms and rule.matches(method, template):
                delay += rule.arrival_delay_ms
                rule.fired += 1
        return delay

    def decide(self, method: str, template: str) -> FaultDecision:
        latency = 0.0
        chosen: FaultDecision | None = None
        for rule in self.rules:
            if rule.arrival_delay_ms or not rule.matches(method, template):
                continue
            latency += rule.latency_ms
            decision = self._rule_decision(rule) if chosen is None else None
            if decision is not None:
                chosen = decision
            if rule.latency_ms or decision is not None:
                rule.fired += 1
        if chosen is None:
            return FaultDecision(latency_ms=latency, label=f"latency {latency:g}ms" if latency else None)
        return FaultDecision(chosen.action, chosen.status, latency, chosen.retry_after, chosen.label, chosen.rule)

    def _rule_decision(self, rule: FaultRule) -> FaultDecision | None:
        if rule.sequence:
            step = rule.sequence.pop(0)
            if step == "drop":
                return FaultDecision("drop", 0, label="sequence drop")
            if isinstance(step, int) and step >= 400:
                return FaultDecision("status", step, retry_after=rule.retry_after, label=f"sequence {step}", rule=rule)
            return None
        if rule.drop_rate and self._random.random() < rule.drop_rate:
            return FaultDecision("drop", 0, label="drop_rate")
        if rule.error_rate and self._random.random() < rule.error_rate:
            return FaultDecision(
                "status", rule.error_status, retry_after=rule.retry_after, label="error_rate", rule=rule
            )
        return None
