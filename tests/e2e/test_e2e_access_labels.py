"""The Access conformance table end to end: every row's labels go through the agent's label parser, the real API,
reconciler and dns-worker to the Cloudflare emulator, whose Access apps must be DockFlare's outcome (or a
stricter one with an error, and then nothing published for the hostname). Groups are created through the API
with DockFlare's ids; the account owner and the One-time PIN login method are found by the dns-worker in the
emulated account. A real container on Podman references a group the same way."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from flareport_agent.labels import parse_container
from fptest.access_table import GROUPS, OWNER, ROWS, container_labels, hostname, rule_path
from fptest.e2e_stack import ZONE, E2EStack
from fptest.fake_agent import FakeAgent, cname_target
from fptest.waiting import wait_for_sync

from .conftest import StackFactory

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def stack(stack_factory: StackFactory) -> E2EStack:
    stack = stack_factory(GRACE_PERIOD_SECONDS="2")
    for group_id, definition in GROUPS.items():
        stack.admin("POST", "/api/v1/access-groups", {"group_id": group_id, "name": group_id, **definition})
    return stack


def _app_outcome(state: dict[str, Any], domain: str) -> tuple[Any, ...]:
    apps = [a for a in state["access_apps"].values() if a.get("domain") == domain]
    if not apps:
        return ("none",)
    assert len(apps) == 1, f"one app per domain: {apps}"
    policies = [state["access_policies"][link["id"]] for link in apps[0]["_policy_links"]]
    if all(p["reusable"] for p in policies):
        return ("groups", tuple(str(p["name"]).removeprefix("flareport group ") for p in policies))
    assert not any(p["reusable"] for p in policies), "never both kinds of policy in one app"
    return ("inline", tuple(p["decision"] for p in policies))


def test_every_row_of_the_table_reaches_cloudflare_as_in_dockflare(stack: E2EStack) -> None:
    agent = FakeAgent.register(stack, "access-table")
    for row in ROWS:
        info = parse_container(container_labels(row, zone=ZONE), container_id=row.row.lower(), name=row.row.lower())
        assert info is not None
        answer = agent.start(row.row.lower(), *(msgspec.to_builtins(r) for r in info.rules))
        assert answer[0] == 200, answer

    waiting: list[str] = []

    def settled() -> dict[tuple[str, str | None], Any]:
        docs = {(r["hostname"], r.get("path")): r for r in stack.rules() if r.get("agent_id") == agent.agent_id}
        waiting.clear()
        for row in ROWS:
            for which, expected in row.expected.items():
                if expected[0] == "label":
                    continue
                doc = docs.get((hostname(row, ZONE), rule_path(row, which)))
                wanted = "error" if expected[0] == "error" else "active"
                if doc is None or doc["status"] != wanted:
                    waiting.append(f"{row.row}/{which}: {doc and (doc['status'], doc.get('error'))}")
        return {} if waiting else docs

    try:
        docs = wait_for_sync(settled, timeout=180, interval=0.5, what="every rule of the table active or in error")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still waiting for {waiting}") from None
    state = stack.cf_state()
    for row in ROWS:
        host = hostname(row, ZONE)
        for which, expected in row.expected.items():
            path = rule_path(row, which)
            if expected[0] in ("error", "label"):
                assert cname_target(stack, host) is None, f"{row.row}: nothing is published for {host}"
                if expected[0] == "error":
                    assert expected[1] in str(docs[(host, path)].get("error")), (row.row, docs[(host, path)])
                continue
            domain = host + (path.rstrip("/") if path else "")
            assert _app_outcome(state, domain) == expected, row.row
        if not any(e[0] in ("error", "label") for e in row.expected.values()):
            assert cname_target(stack, host) == agent.tunnel_id, f"{row.row}: {host} is published"

    # A protected path is routed as exactly the prefix its app covers; an unprotected one keeps its meaning.
    assert agent.tunnel_id is not None
    paths = {(r.get("hostname"), r.get("path")) for r in stack.ingress(agent.tunnel_id, state)}
    d11 = hostname(next(r for r in ROWS if r.row == "D11"), ZONE)
    assert (d11, "^/auth/google/callback(/.*)?$") in paths, paths
    e13 = hostname(next(r for r in ROWS if r.row == "E13"), ZONE)
    assert (e13, "/zone") in paths, "default_tld makes no app of ours: the path stays as written"

    # authenticated-default is the account owner, by One-time PIN only.
    [app] = [a for a in state["access_apps"].values() if a.get("domain") == hostname(ROWS[5], ZONE)]
    [policy] = [state["access_policies"][link["id"]] for link in app["_policy_links"]]
    assert policy["require"] == [{"email": {"email": OWNER}}]
    assert [next(iter(rule)) for rule in policy["include"]] == ["login_method"]
    assert app["allowed_idps"] == [policy["include"][0]["login_method"]["id"]]


def test_a_container_labelled_with_a_group_created_through_the_api_is_protected_by_it(stack: E2EStack) -> None:
    fakes = {a["agent_id"] for a in stack.agents() if str(a.get("display_name", "")).startswith("access-table")}
    agent_id = stack.wait_new_agent(fakes)["agent_id"]
    tunnel_id = stack.enroll(agent_id, "access-host")
    host = f"grouped.{ZONE}"
    labels = {
        "dockflare.enable": "true",
        "dockflare.hostname": host,
        "dockflare.service": "http://grouped:80",
        "dockflare.access.group": "ops-team",
    }
    container = stack.hosts["host1"].run("grouped", labels, stack.image)
    try:
        # Until the group exists nothing is published, and the rule says why.
        error = wait_for_sync(
            lambda: next((r for r in stack.rules_of(host) if r["status"] == "error"), {}),
            timeout=120,
            interval=0.3,
            what=f"{host} in error while its group is unknown",
        )
        assert "'ops-team' does not exist" in error["error"]
        assert cname_target(stack, host) is None
        body = {"group_id": "ops-team", "name": "Ops", "include": [{"email_domain": {"domain": "ops.example.com"}}]}
        created = stack.admin("POST", "/api/v1/access-groups", body)
        assert created["group_id"] == "ops-team"
        wait_for_sync(
            lambda: any(r["status"] == "active" for r in stack.rules_of(host)),
            timeout=120,
            interval=0.3,
            what=f"{host} active once its group exists",
        )
        assert cname_target(stack, host) == tunnel_id
        assert _app_outcome(stack.cf_state(), host) == ("groups", ("ops-team",))
    finally:
        container.remove(force=True)
