"""Secrets and a stolen agent key, on the whole stack (real api, reconciler, dns-worker, emulator and agent).

* A tunnel token reaches its agent once: after the agent acknowledged ``start_tunnel``, no Redis key or stream
  (cf-results, commands, intents, dead letters, history, read model) holds it any more.
* A key revoked while its long-polls wait gets 401 from them, even when its tunnel token arrives meanwhile; a
  third concurrent long-poll of one agent is refused naming ``longpolls``.
* A key minted with the agent-key secret while Redis holds its data is refused and restores nothing.
* A rolled key reaches the running agent through the real reconciler and is then in no Redis key either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from flareport_api.keyproof import KeyMinter
from flareport_cli.dev import DEMO_ACCOUNT_ID
from flareport_common.settings import derived_agent_key_secret
from fptest.e2e_stack import E2EStack, http
from fptest.redis_scan import keys_holding
from fptest.waiting import wait_for_sync

from .conftest import Enrolled, StackFactory, enrol_first_agent

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def enrolled(stack_factory: StackFactory) -> Enrolled:
    return enrol_first_agent(stack_factory(), "secrets")


@pytest.fixture
def store(enrolled: Enrolled) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(enrolled.stack.env["REDIS_URL"])
    try:
        yield client
    finally:
        client.close()


def commands_acked(stack: E2EStack, agent_id: str, kind: str) -> list[dict[str, Any]]:
    history = stack.admin("GET", f"/api/v1/agents/{agent_id}")["commands"]
    return [c for c in history if c["command_type"] == kind and c.get("acked_at")]


def test_a_tunnel_token_is_in_no_redis_key_once_its_agent_acknowledged_it(
    enrolled: Enrolled, store: redis.Redis
) -> None:
    stack, agent_id = enrolled.stack, enrolled.agent_id
    wait_for_sync(lambda: commands_acked(stack, agent_id, "start_tunnel"), timeout=60, what="start_tunnel acked")
    status, answer = stack.cf("GET", f"/accounts/{DEMO_ACCOUNT_ID}/cfd_tunnel/{enrolled.tunnel_id}/token")
    assert status == 200, answer
    token = str(answer["result"])
    assert len(token) > 20

    assert keys_holding(store, token) == [], "delivered once, then gone from every stream and key"


def test_a_key_revoked_while_its_polls_wait_gets_401_and_a_third_poll_429(
    enrolled: Enrolled, store: redis.Redis
) -> None:
    stack = enrolled.stack
    keys = stack.keys
    key = stack.admin("POST", "/api/v1/keys", {"label": "stolen"})["key"]
    status, registered = stack.api("POST", "/api/v1/agents/register", {"display_name": "stolen"}, key=key)
    assert status == 200, registered
    agent_id = registered["agent_id"]
    path = f"/api/v1/agents/{agent_id}/commands"

    with ThreadPoolExecutor(max_workers=2) as pool:
        url = stack.api_url + path + "?wait=50"
        polls = [pool.submit(http, "GET", url, key=key, timeout=80) for _ in range(2)]
        wait_for_sync(lambda: store.zcard(keys.agent_longpolls(agent_id)) == 2, timeout=30, what="two waiting polls")

        status, refused = stack.api("GET", path + "?wait=1", key=key)
        assert (status, refused["error"]["field"]) == (429, "longpolls"), refused

        key_id = next(k["key_id"] for k in stack.admin("GET", "/api/v1/keys")["keys"] if k["agent_id"] == agent_id)
        stack.admin("POST", f"/api/v1/keys/{key_id}/revoke")
        # The revocation wakes the key's polls: they end now, long before the 50 s they asked to wait, and free
        # their slots.
        wait_for_sync(lambda: all(poll.done() for poll in polls), timeout=20, what="the revoked key's polls ended")
        # The admin enrols the host meanwhile: its tunnel is created and the token sent to its command stream.
        stack.admin("POST", f"/api/v1/agents/{agent_id}/enroll", {"tunnel_name": "stolen"})
        wait_for_sync(
            lambda: store.xlen(keys.agent_commands(agent_id)) > 0, timeout=45, what="start_tunnel for the host"
        )
        answers = [poll.result(timeout=90) for poll in polls]

    assert [status for status, _ in answers] == [401, 401], answers
    assert all(body["error"]["code"] == "key_revoked" for _, body in answers)
    tunnel_id = wait_for_sync(lambda: stack.agent(agent_id).get("tunnel_id"), timeout=30, what="its tunnel")
    status, token = stack.cf("GET", f"/accounts/{DEMO_ACCOUNT_ID}/cfd_tunnel/{tunnel_id}/token")
    assert status == 200 and token["result"] not in str(answers)


def test_a_key_minted_with_the_secret_is_refused_while_redis_holds_its_data(
    enrolled: Enrolled, store: redis.Redis
) -> None:
    stack, victim = enrolled.stack, enrolled.agent_id
    keys = stack.keys
    minter = KeyMinter(stack.env.get("FLAREPORT_AGENT_KEY_SECRET") or derived_agent_key_secret(stack.master_key))
    for minted in (minter.mint(victim)[0], minter.mint()[0]):
        status, body = stack.api("POST", f"/api/v1/agents/{victim}/heartbeat", {"docker_reachable": True}, key=minted)
        assert (status, body["error"]["code"]) == (401, "unknown_key"), body
    status, body = stack.api("POST", "/api/v1/agents/register", {"display_name": "minted"}, key=minter.mint()[0])
    assert status == 401, body

    assert store.get(keys.keys_recovered_at) is None, "no recovery hold for the whole system"
    assert all(k["label"] != "restored after a loss of data" for k in stack.admin("GET", "/api/v1/keys")["keys"])


def test_a_rolled_key_reaches_the_running_agent_and_is_in_no_redis_key(enrolled: Enrolled, store: redis.Redis) -> None:
    stack, agent_id = enrolled.stack, enrolled.agent_id
    old_key = (stack.workdir / "dev" / "agent-key").read_text().split()[-1]
    key_id = next(k["key_id"] for k in stack.admin("GET", "/api/v1/keys")["keys"] if k["agent_id"] == agent_id)
    stack.admin("POST", f"/api/v1/keys/{key_id}/roll")
    wait_for_sync(lambda: commands_acked(stack, agent_id, "rotate_key"), timeout=60, what="rotate_key acked")
    state = json.loads((stack.workdir / "dev" / "agent" / "state.json").read_text())
    new_key = state["rotated_key"]
    assert new_key.startswith("fpk_") and new_key != old_key

    assert keys_holding(store, new_key) == [], "delivered once: Redis keeps only its hash"
    assert stack.api("POST", f"/api/v1/agents/{agent_id}/heartbeat", {}, key=old_key)[0] == 401
    assert stack.api("POST", f"/api/v1/agents/{agent_id}/heartbeat", {}, key=new_key)[0] == 200
