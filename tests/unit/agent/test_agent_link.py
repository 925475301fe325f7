"""The agent's link to the master: one error policy for every call, and the gate a rejected key closes."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from typing import get_args

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from flareport_agent.client import KeyRejected, MasterUnavailable, RequestRejected
from flareport_agent.link import Missed
from flareport_agent.linkpolicy import POLICY, Call, Kind, Reaction
from flareport_common.protocol import CommandAckRequest, HeartbeatRequest, RegisterResponse
from fptest.agent_link import FAST_LINK, ScriptedClient, scripted_link
from fptest.waiting import already, wait_for


def errors(call: str, kind: str) -> float:
    value = REGISTRY.get_sample_value("flareport_agent_master_errors_total", {"call": call, "kind": kind})
    return value or 0.0


def test_every_call_has_a_rule_for_every_kind_of_failure() -> None:
    assert set(POLICY) == set(itertools.product(get_args(Call), get_args(Kind)))


async def test_connect_retries_while_the_master_is_away_and_counts_each_failure() -> None:
    client = ScriptedClient()
    client.fail("register", MasterUnavailable("down"), MasterUnavailable("throttled", retry_after=0.01))
    told: list[bool] = []
    link = scripted_link(client, registered=lambda response, again: told.append(again))
    before = errors("register", "unavailable")
    with capture_logs() as logs:
        await asyncio.wait_for(link.connect(), 5)
    assert client.calls == ["register"] * 3
    assert link.is_open and told == [False], "registered once, as the start-up registration"
    assert errors("register", "unavailable") - before == 2
    assert [e["event"] for e in logs] == ["master.call_failed", "master.call_failed", "master.registered"]
    assert {e["kind"] for e in logs[:2]} == {"unavailable"} and logs[0]["log_level"] == "warning"
    assert logs[1]["retry_in"] == 0.01, "the master's Retry-After is honoured"
    await link.close()


async def test_a_rejected_key_stops_every_call_but_a_slow_reregister_and_is_logged_once() -> None:
    client = ScriptedClient()
    told: list[bool] = []
    # Slow enough that the heartbeat below is made while the gate is closed.
    timing = replace(FAST_LINK, reregister_seconds=0.2)
    link = scripted_link(client, registered=lambda response, again: told.append(again), timing=timing)
    await link.connect()
    client.fail("commands", KeyRejected("HTTP 401 key_revoked", status=401))
    client.fail("register", KeyRejected("HTTP 401 key_revoked", status=401))
    with capture_logs() as logs:
        poll = asyncio.create_task(link.poll_commands(0))
        await wait_for(lambda: already(not link.is_open), what="the gate closed by the rejected key")
        heartbeat = asyncio.create_task(link.heartbeat(HeartbeatRequest()))
        # The failed re-register, then the one that gets through.
        await wait_for(lambda: already(client.calls.count("register") == 3), what="two slow re-register attempts")
        missed = await asyncio.wait_for(poll, 5)
        assert isinstance(missed, Missed) and missed.reaction is Reaction.REVOKE
        assert not isinstance(await asyncio.wait_for(heartbeat, 5), Missed)
    assert client.calls == ["register", "commands", "register", "register", "heartbeat"], (
        "nothing but re-register attempts while the key is refused"
    )
    assert told == [False, True], "a re-registration is told as one, so the agent resends its inventory"
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == ["master.key_rejected"]
    await link.close()


async def test_a_refused_ack_is_given_up_without_closing_the_gate() -> None:
    client = ScriptedClient()
    link = scripted_link(client)
    await link.connect()
    client.fail("ack", KeyRejected("HTTP 403", status=403), RequestRejected("HTTP 404", status=404))
    before = errors("ack", "key_rejected"), errors("ack", "rejected")
    for _ in range(2):
        missed = await asyncio.wait_for(link.ack("c1", CommandAckRequest(ok=True)), 5)
        assert isinstance(missed, Missed) and missed.reaction is Reaction.GIVE_UP
    assert link.is_open, "the next command poll finds out whether the key still works"
    assert (errors("ack", "key_rejected") - before[0], errors("ack", "rejected") - before[1]) == (1, 1)
    await link.close()


async def test_a_heartbeat_the_master_misses_waits_for_the_next_beat_not_for_a_backoff() -> None:
    client = ScriptedClient()
    link = scripted_link(client)
    await link.connect()
    client.fail("heartbeat", MasterUnavailable("down", retry_after=60))
    missed = await asyncio.wait_for(link.heartbeat(HeartbeatRequest()), 5)
    assert isinstance(missed, Missed) and missed.reaction is Reaction.GIVE_UP
    await link.close()


async def test_a_registration_the_master_refuses_as_invalid_is_retried_only_slowly() -> None:
    client = ScriptedClient()
    client.fail("register", RequestRejected("HTTP 422 invalid_body", status=422, code="invalid_body"))
    registered: list[RegisterResponse] = []
    link = scripted_link(client, registered=lambda response, again: registered.append(response))
    await asyncio.wait_for(link.connect(), 5)
    assert client.calls == ["register", "register"] and len(registered) == 1
    await link.close()
