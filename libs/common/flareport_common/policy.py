"""The names of the origin policy, shared by the API (which validates what an admin allows), the settings (the
global allowance) and the reconciler (which applies the policy to agents' rules; see its ``origins`` module).

An agent's labels may not publish these kinds of origin unless an admin allows the kind, for one agent or for
all: each one reaches beyond the containers of the agent's host (docs/security.md, "Threats from a stolen agent
key"). Admins' manual rules are not subject to the policy.
"""

from __future__ import annotations

from collections.abc import Iterable

# kind -> what it is, as the denial message and the docs say it.
ORIGIN_KINDS: dict[str, str] = {
    "link-local": "a link-local address (169.254.0.0/16, fe80::/10)",
    "metadata": "a cloud metadata address",
    "unix": "a unix socket",
    "bastion": "a bastion (a proxy to any host the connector can reach)",
}

ORIGIN_ALLOW_ENV = "FLAREPORT_AGENT_ORIGIN_ALLOW"


def unknown_kinds(kinds: Iterable[str]) -> list[str]:
    """The given kinds that are not origin kinds, in order."""
    return [k for k in kinds if k not in ORIGIN_KINDS]


def kinds_hint() -> str:
    return "one of " + ", ".join(ORIGIN_KINDS)
