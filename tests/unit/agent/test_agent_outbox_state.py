"""The event buffer (sequence numbers, overflow, retries) and the state file, without a master or an engine."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from flareport_agent.client import KeyRejected, MasterUnavailable
from flareport_agent.outbox import Outbox, send_loop
from flareport_agent.state import AgentState, StateStore, effective_key, key_hash, remember_command
from flareport_common.messages.events import ContainerStop, Inventory, TunnelState, TunnelStatus
from flareport_common.protocol import AgentEvent, EventBatchResponse
from fptest.agent_link import ScriptedClient, scripted_link
from fptest.waiting import wait_for


def stop(cid: str) -> ContainerStop:
    return ContainerStop(agent_id="", seq=0, container_id=cid)


def snapshot() -> Inventory:
    return Inventory(agent_id="", seq=0)


async def test_events_get_increasing_sequence_numbers_and_overflow_becomes_one_snapshot() -> None:
    outbox = Outbox(capacity=3, last_seq=10, snapshot=snapshot)
    for cid in "abc":
        outbox.put(stop(cid))
    outbox.put(TunnelStatus(agent_id="", tunnel=TunnelState()))
    _, batch = outbox.peek(10)
    assert [type(e).__name__ for e in batch] == ["Inventory"], "a full buffer is replaced by a snapshot"
    assert batch[0].seq == 14  # type: ignore[union-attr]


async def test_rebase_renumbers_after_a_master_that_is_ahead() -> None:
    outbox = Outbox(capacity=10, last_seq=0, snapshot=snapshot)
    outbox.put(stop("a"))
    outbox.put(stop("b"))
    outbox.rebase(41, "agent-7")
    _, batch = outbox.peek(10)
    assert [(e.seq, e.agent_id) for e in batch] == [(42, "agent-7"), (43, "agent-7")]  # type: ignore[union-attr]
    outbox.rebase(5, "agent-7")
    _, batch = outbox.peek(10)
    assert [e.seq for e in batch] == [42, 43], "numbers already ahead of the master are kept"  # type: ignore[union-attr]


async def test_sender_retries_honours_retry_after_and_waits_out_a_rejected_key() -> None:
    outbox = Outbox(capacity=100, last_seq=0, snapshot=snapshot)
    sent: list[tuple[AgentEvent, ...]] = []
    accepted: list[int] = []

    async def send(batch: tuple[AgentEvent, ...]) -> EventBatchResponse:
        sent.append(batch)
        return EventBatchResponse(accepted=len(batch), last_seq=0)

    client = ScriptedClient(send)
    link = scripted_link(client)
    await link.connect()
    client.fail("events", MasterUnavailable("down", retry_after=0.01), KeyRejected("revoked", status=401))
    task = asyncio.create_task(send_loop(outbox, link, max_batch=2, linger=0, on_accepted=accepted.append))
    for cid in "abc":
        outbox.put(stop(cid))

    async def all_sent() -> bool:
        return len(outbox) == 0 and sum(len(b) for b in sent) == 3

    await wait_for(all_sent, what="every buffered event sent after the failures")
    task.cancel()
    await link.close()
    assert client.calls == ["register", "events", "events", "register", "events", "events"], (
        "retried after the master was away; after the rejected key, registered again before sending on"
    )
    assert [[e.container_id for e in b] for b in sent] == [["a", "b"], ["c"]]  # type: ignore[union-attr]
    assert accepted == [2, 3]


def test_state_file_is_private_atomic_and_survives_a_corrupt_copy(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "data")
    state = AgentState(agent_id="a1", tunnel_id="t", tunnel_token="secret", tunnel_wanted=True, last_seq=9)
    store.save(state)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.load() == state
    assert [p.name for p in store.dir.iterdir()] == ["state.json"], "no temporary file is left behind"
    store.path.write_text("{not json")
    assert store.load() == AgentState()
    assert (store.dir / "state.corrupt").exists()


def test_rotated_key_is_used_only_while_the_configured_key_is_the_one_it_replaced() -> None:
    state = AgentState(rotated_key="new", rotated_from=key_hash("configured"))
    assert effective_key(state, "configured") == "new"
    assert effective_key(state, "operator-set-another") == "operator-set-another"


@pytest.mark.parametrize("keep", [2])
def test_remembered_commands_are_bounded(keep: int) -> None:
    state = AgentState()
    for n in range(5):
        remember_command(state, str(n), {"ok": True}, keep=keep)
    assert list(state.done_commands) == ["3", "4"]
