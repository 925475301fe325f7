"""The agent page shows the agent's publishing policy, and its form changes it as ``PATCH .../policy`` does."""

from __future__ import annotations

from flareport_common.messages.intents import AgentEnrolled, AgentPolicyChanged, IntentMessage
from flareport_common.readmodel import AgentRecord
from fptest.api_helpers import stream_messages

from .conftest import Ui

PAGE = "/ui/agents/ag-one"


async def _agent(ui: Ui) -> None:
    record = AgentRecord(
        agent_id="ag-one",
        display_name="web-host",
        status="active",
        tunnel_id="t1",
        allow_apex=True,
        origin_allow=("unix",),
    )
    await ui.put_agent(record)


async def test_the_page_shows_the_policy_and_the_form_replaces_it(ui: Ui) -> None:
    await _agent(ui)
    await ui.logged_in()
    html = await ui.html(PAGE)
    assert "Wildcard names, zone apex</dt><dd>denied, allowed" in html
    assert "Origins allowed</dt><dd>unix" in html
    assert 'name="origin_allow" value="unix" checked' in html and 'value="metadata" checked' not in html

    form = [
        ("csrf", ui.csrf),
        ("back", PAGE),
        ("allowed_zones", "example.com, Other.org"),
        ("allow_wildcard", "true"),
        ("origin_allow", "metadata"),
        ("origin_allow", "bastion"),
    ]
    response = await ui.client.post(f"{PAGE}/policy", data=form, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == PAGE
    assert "Changing what web-host may publish" in await ui.html(PAGE)
    [intent] = await stream_messages(ui.redis, ui.keys.intents, IntentMessage)
    assert intent == AgentPolicyChanged(
        id=intent.id,
        occurred_at=intent.occurred_at,
        agent_id="ag-one",
        allowed_zones=("example.com", "other.org"),
        allow_wildcard=True,
        origin_allow=("bastion", "metadata"),
    )


async def test_a_bad_policy_is_refused_on_the_page_and_writes_nothing(ui: Ui) -> None:
    await _agent(ui)
    await ui.logged_in()
    form = [("csrf", ui.csrf), ("back", PAGE), ("origin_allow", "docker")]
    response = await ui.client.post(f"{PAGE}/policy", data=form, allow_redirects=False)
    assert response.status == 302
    assert "unknown origin kind" in await ui.html(PAGE)
    assert await stream_messages(ui.redis, ui.keys.intents, IntentMessage) == []


async def test_enrolling_from_the_page_keeps_the_agents_policy(ui: Ui) -> None:
    await _agent(ui)
    await ui.logged_in()
    await ui.post(f"{PAGE}/enroll", tunnel_name="edge", back=PAGE)
    [intent] = await stream_messages(ui.redis, ui.keys.intents, IntentMessage)
    assert isinstance(intent, AgentEnrolled)
    assert (intent.allow_apex, intent.origin_allow) == (True, ("unix",))
