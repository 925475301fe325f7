"""A hand-made agent for attack tests: a real agent key speaking the agent protocol to a real API, with events an
attacker chooses (no engine, no cloudflared). Synchronous, like the rest of the system-test helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fptest.e2e_stack import E2EStack
from fptest.waiting import wait_for_sync


@dataclass
class FakeAgent:
    stack: E2EStack
    key: str
    agent_id: str
    tunnel_id: str | None = None
    seq: int = 0
    key_id: str = ""
    sent: list[int] = field(default_factory=list)

    @classmethod
    def register(cls, stack: E2EStack, name: str, *, enrol: bool = True, **enrolment: Any) -> FakeAgent:
        """A new key, registered as agent ``name``; enrolled with a tunnel of its own unless ``enrol`` is false."""
        created = stack.admin("POST", "/api/v1/keys", {"label": name})
        status, answer = stack.api("POST", "/api/v1/agents/register", {"display_name": name}, key=created["key"])
        assert status == 200, (status, answer)
        agent = cls(stack, created["key"], answer["agent_id"], key_id=created["info"]["key_id"])
        agent.seq = int(answer.get("last_seq") or 0)
        if enrol:
            stack.admin("POST", f"/api/v1/agents/{agent.agent_id}/enroll", {"tunnel_name": name, **enrolment})
            record = wait_for_sync(
                lambda: (lambda a: a if a["status"] == "active" and a.get("tunnel_id") else {})(
                    stack.agent(agent.agent_id)
                ),
                timeout=60,
                interval=0.2,
                what=f"agent {name} active with its tunnel",
            )
            agent.tunnel_id = str(record["tunnel_id"])
        return agent

    def send(self, *events: dict[str, Any]) -> tuple[int, Any]:
        numbered = []
        for event in events:
            self.seq += 1
            numbered.append({**event, "seq": self.seq, "agent_id": self.agent_id})
        return self.stack.api("POST", f"/api/v1/agents/{self.agent_id}/events", {"events": numbered}, key=self.key)

    def start(self, cid: str, *rules: dict[str, Any], name: str | None = None) -> tuple[int, Any]:
        container = {"container_id": cid, "name": name or cid, "rules": list(rules)}
        return self.send({"type": "container_start", "container": container})

    def stop(self, cid: str) -> tuple[int, Any]:
        return self.send({"type": "container_stop", "container_id": cid, "name": cid})


def cname_target(stack: E2EStack, hostname: str) -> str | None:
    """The tunnel a hostname's CNAME points at (None when there is no CNAME)."""
    for record in stack.dns_records():
        if record["name"] == hostname and record["type"] == "CNAME":
            return str(record["content"]).removesuffix(".cfargotunnel.com")
    return None


def rule_of(stack: E2EStack, hostname: str, agent_id: str) -> dict[str, Any]:
    """The agent's rule document for ``hostname`` ({} while there is none)."""
    return next((r for r in stack.rules_of(hostname) if r.get("agent_id") == agent_id), {})


def wait_rule(stack: E2EStack, hostname: str, agent: FakeAgent, status: str) -> dict[str, Any]:
    """Wait until the agent's rule for ``hostname`` has ``status``; the rule document."""
    return wait_for_sync(
        lambda: (lambda r: r if r.get("status") == status else {})(rule_of(stack, hostname, agent.agent_id)),
        timeout=90,
        interval=0.3,
        what=f"{agent.agent_id}'s rule for {hostname} to be {status}",
    )
