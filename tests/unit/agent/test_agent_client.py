"""The agent's HTTP client maps the protocol's failures to the three errors its loops act on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flareport_agent.client import KeyRejected, MasterClient, MasterUnavailable
from flareport_common.messages.commands import StartTunnel
from flareport_common.protocol import RegisterRequest
from fptest.agent_master_double import MasterDouble

KEY = "agent-key-0123456789"


@pytest.fixture
async def master() -> AsyncIterator[MasterDouble]:
    double = MasterDouble(keys={KEY})
    await double.start()
    yield double
    await double.stop()


async def test_register_poll_and_error_mapping(master: MasterDouble) -> None:
    client = MasterClient(master.url, KEY)
    try:
        registered = await client.register(RegisterRequest(display_name="host-a"))
        assert registered.agent_id == client.agent_id == "agent-1"
        master.push(StartTunnel(tunnel_id="t", token="k"))
        master.push_raw({"type": "future_command", "x": 1})
        polled = await client.poll_commands(0)
        assert [(p.type, p.command is not None) for p in polled] == [("start_tunnel", True), ("future_command", False)]
        assert "future_command" in (polled[1].error or "")

        master.mode = "throttle"
        master.retry_after = 7
        with pytest.raises(MasterUnavailable) as unavailable:
            await client.poll_commands(0)
        assert unavailable.value.retry_after == 7

        master.mode = "unauthorized"
        with pytest.raises(KeyRejected) as rejected:
            await client.poll_commands(0)
        assert rejected.value.status == 401 and rejected.value.code == "key_revoked"

        await master.stop()
        with pytest.raises(MasterUnavailable, match="register"):
            await client.register(RegisterRequest(display_name="host-a"))
    finally:
        await client.close()
