"""The agent page shows the agent's quota refusals: which limit, when last, how many times, and why."""

from __future__ import annotations

from flareport_api.quotas import refuse
from flareport_common.readmodel import AgentRecord

from .conftest import Ui


async def test_the_agent_page_lists_each_refused_limit_with_its_count_and_message(ui: Ui) -> None:
    await ui.put_agent(AgentRecord(agent_id="ag-q", display_name="noisy-host", status="active"))
    await ui.put_agent(AgentRecord(agent_id="ag-calm", display_name="calm-host", status="active"))
    await ui.logged_in()
    assert "Within every quota so far" in await ui.html("/ui/agents/ag-q")

    for _ in range(3):
        await refuse(ui.redis, ui.keys, "ag-q", "events_per_second", "over this agent's rate of <b>200</b>")
    await refuse(ui.redis, ui.keys, "ag-q", "events_backlog", "12000 events are waiting", retry_after=2)
    html = await ui.html("/ui/agents/ag-q")
    section = html.split("Quota refusals", 1)[1]
    assert "events_per_second" in section and "<td>3</td>" in section
    assert "events_backlog" in section and "12000 events are waiting" in section
    assert "<b>200</b>" not in section and "&lt;b&gt;200&lt;/b&gt;" in section, "the message is escaped"
    assert "Within every quota so far" in await ui.html("/ui/agents/ag-calm"), "other agents are not affected"
