"""What the agent does when a call to the master fails: the whole error policy in one table (pure, no I/O).

Every call the agent makes (``register``, ``events``, ``commands``, ``ack``, ``heartbeat``) can fail in three ways,
named after the client's errors (``client.py``): ``unavailable`` (network, 5xx, 429), ``rejected`` (any other 4xx:
this request will never succeed as it is) and ``key_rejected`` (401/403: the key is revoked or unknown). For each
pair the table says how loud the failure is in the log and which of three reactions follows:

- ``RETRY``: wait (the master's ``Retry-After``, else the call's capped backoff) and try again;
- ``REVOKE``: the key is not taken: close the link, so that nothing but a slow re-register reaches the master
  until it takes a key again, then try again;
- ``GIVE_UP``: this attempt is over and the caller decides what comes next (the outbox narrows a refused batch
  down, a heartbeat waits for the next beat, an ack is left to the master's redelivery).

Nothing is fatal: the agent keeps watching Docker and serving cloudflared whatever the master answers. Every failure
is counted in ``flareport_agent_master_errors_total{call, kind}`` (``link.py`` applies this table).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

Call = Literal["register", "events", "commands", "ack", "heartbeat"]
Kind = Literal["unavailable", "rejected", "key_rejected"]
Level = Literal["debug", "info", "warning", "error"]


class Reaction(enum.Enum):
    RETRY = "retry"
    REVOKE = "revoke"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Rule:
    reaction: Reaction
    # Of the ``master.call_failed`` line; for a revocation, of the one line that says the link closed.
    level: Level


_RETRY_QUIETLY = Rule(Reaction.RETRY, "debug")
_REVOKE = Rule(Reaction.REVOKE, "error")

POLICY: dict[tuple[Call, Kind], Rule] = {
    # Until the first registration the agent runs on its last-known state: worth saying at every attempt.
    ("register", "unavailable"): Rule(Reaction.RETRY, "warning"),
    # No registration without an accepted request: only the slow re-register can help (a new key, a fixed master).
    ("register", "rejected"): _REVOKE,
    ("register", "key_rejected"): _REVOKE,
    ("events", "unavailable"): Rule(Reaction.RETRY, "warning"),
    # The outbox logs what it narrows down or drops, with the master's reason.
    ("events", "rejected"): Rule(Reaction.GIVE_UP, "debug"),
    ("events", "key_rejected"): _REVOKE,
    # A long-poll that fails is the normal state of a master that is away: quiet, the events line already says so.
    ("commands", "unavailable"): _RETRY_QUIETLY,
    ("commands", "rejected"): Rule(Reaction.RETRY, "error"),
    ("commands", "key_rejected"): _REVOKE,
    # The poller retries an ack a few times and then leaves it to the master, which redelivers the command.
    ("ack", "unavailable"): _RETRY_QUIETLY,
    ("ack", "rejected"): Rule(Reaction.GIVE_UP, "warning"),
    # A refused ack does not revoke: the next command poll with the same key finds out, and revokes then.
    ("ack", "key_rejected"): Rule(Reaction.GIVE_UP, "warning"),
    # A missed heartbeat is made up by the next one, on the usual beat.
    ("heartbeat", "unavailable"): Rule(Reaction.GIVE_UP, "debug"),
    ("heartbeat", "rejected"): Rule(Reaction.GIVE_UP, "warning"),
    ("heartbeat", "key_rejected"): _REVOKE,
}


def decide(call: Call, kind: Kind) -> Rule:
    return POLICY[(call, kind)]
