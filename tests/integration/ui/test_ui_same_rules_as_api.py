"""A UI form and the matching admin API call are one use case: the same input is refused with the same message,
and accepted input is normalised the same way (the forms once had their own, laxer copies of the checks)."""

from __future__ import annotations

import html
from typing import Any

from flareport_common.messages.intents import AgentEnrolled, AgentPolicyChanged, IntentMessage
from flareport_common.readmodel import AgentRecord
from fptest.api_helpers import MASTER, stream_messages

from .conftest import Ui

ADMIN = {"Authorization": f"Bearer {MASTER}"}
BACK = "/ui/agents/ag-one"


async def _api_refusal(ui: Ui, method: str, path: str, body: dict[str, Any]) -> str:
    response = await ui.client.request(method, path, json=body, headers=ADMIN)
    assert response.status == 422, await response.text()
    return str((await response.json())["error"]["message"])


async def _notice(ui: Ui) -> str:
    return html.unescape(await ui.html(BACK))


async def test_forms_refuse_what_the_api_refuses_with_its_message(ui: Ui) -> None:
    await ui.put_agent(AgentRecord(agent_id="ag-one", display_name="web-host", status="pending"))
    await ui.logged_in()

    too_many = [f"z{n}.example.com" for n in range(257)]
    said = await _api_refusal(ui, "POST", "/api/v1/agents/ag-one/enroll", {"allowed_zones": too_many})
    await ui.post("/ui/agents/ag-one/enroll", allowed_zones=" ".join(too_many), back=BACK)
    assert said in await _notice(ui), f"the enrol form shows the API's refusal {said!r}"

    said = await _api_refusal(ui, "PATCH", "/api/v1/agents/ag-one/policy", {"origin_allow": ["gopher"]})
    form = [("csrf", ui.csrf), ("back", BACK), ("origin_allow", "gopher")]
    await ui.client.post("/ui/agents/ag-one/policy", data=form, allow_redirects=False)
    assert said in await _notice(ui), f"the policy form shows the API's refusal {said!r}"

    assert await stream_messages(ui.redis, ui.keys.intents, IntentMessage) == [], "refused forms write nothing"


async def test_forms_normalise_allow_lists_like_the_api(ui: Ui) -> None:
    await ui.put_agent(AgentRecord(agent_id="ag-one", display_name="web-host", status="pending"))
    await ui.logged_in()
    zones = "example.com, Example.COM example.org example.com"
    await ui.post("/ui/agents/ag-one/enroll", allowed_zones=zones, allowed_suffixes=".apps.example.com", back=BACK)
    await ui.client.post(
        "/api/v1/agents/ag-one/enroll",
        json={"allowed_zones": zones.replace(",", " ").split(), "allowed_suffixes": [".apps.example.com"]},
        headers=ADMIN,
    )
    form = [("csrf", ui.csrf), ("back", BACK), ("allowed_zones", zones)]
    await ui.client.post("/ui/agents/ag-one/policy", data=form, allow_redirects=False)
    intents = await stream_messages(ui.redis, ui.keys.intents, IntentMessage)
    enrolled = [i for i in intents if isinstance(i, AgentEnrolled)]
    policies = [i for i in intents if isinstance(i, AgentPolicyChanged)]
    assert len(enrolled) == 2 and len(policies) == 1, intents
    form_enrol, api_enrol = enrolled
    assert form_enrol.allowed_zones == api_enrol.allowed_zones == ("example.com", "example.org"), (
        "each zone once, however often and in whatever case it was typed"
    )
    assert form_enrol.allowed_suffixes == api_enrol.allowed_suffixes
    assert policies[0].allowed_zones == ("example.com", "example.org")
