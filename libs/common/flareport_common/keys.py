"""Every Redis key and stream name Flareport uses, in one place, under one configurable prefix.

Keys that one operation touches together share a hash tag (``{agent:<id>}``, ``{target:<key>}``) so the
layout already works on Redis Cluster. Nothing outside this module builds a key by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "fp:"

# Consumer group names, one per consuming service.
GROUP_RECONCILER = "reconciler"
GROUP_DNS_WORKER = "dns-worker"
GROUP_AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    # Streams (see DESIGN.md, "Streams").
    @property
    def events(self) -> str:
        return f"{self.prefix}stream:events"

    @property
    def intents(self) -> str:
        return f"{self.prefix}stream:intents"

    @property
    def cf_jobs(self) -> str:
        return f"{self.prefix}stream:cf-jobs"

    @property
    def cf_results(self) -> str:
        return f"{self.prefix}stream:cf-results"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}stream:dead-letters"

    def agent_commands(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:commands"

    # Agents and their keys (read model written by the reconciler, key material by the API).
    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:record"

    def agent_heartbeats(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:heartbeats"

    def agent_command_history(self, agent_id: str) -> str:
        return f"{self.prefix}{{agent:{agent_id}}}:command-history"

    @property
    def agents_index(self) -> str:
        return f"{self.prefix}agents"

    def api_key(self, key_hash: str) -> str:
        return f"{self.prefix}apikey:{key_hash}"

    @property
    def api_keys_index(self) -> str:
        return f"{self.prefix}apikeys"

    # Notifications that an agent has commands waiting (one pub/sub channel for all API processes).
    @property
    def command_notifications(self) -> str:
        return f"{self.prefix}notify:commands"

    # Rules read model and time-ordered deletions.
    def rule(self, rule_key: str) -> str:
        return f"{self.prefix}rule:{rule_key}"

    @property
    def rules_index(self) -> str:
        return f"{self.prefix}rules"

    @property
    def pending_deletions(self) -> str:
        return f"{self.prefix}pending-deletions"

    # Per-target coordination between replicas.
    def target_lease(self, target: str) -> str:
        return f"{self.prefix}{{target:{target}}}:lease"

    def target_applied(self, target: str) -> str:
        return f"{self.prefix}{{target:{target}}}:applied"

    @property
    def cf_rate_bucket(self) -> str:
        return f"{self.prefix}cf:rate-bucket"

    @property
    def cf_pause_until(self) -> str:
        return f"{self.prefix}cf:pause-until"
