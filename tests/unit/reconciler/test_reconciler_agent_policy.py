"""What planning sees of an agent's publishing policy: the admin's per-agent flags widen the global defaults and
never narrow them; only an agent an admin enrolled counts as enrolled, and an offline one stays so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flareport_common.readmodel import AgentRecord
from flareport_common.settings import load_reconciler
from flareport_reconciler.agents import PolicyDefaults, configure_policy, view_of


@pytest.fixture(autouse=True)
def _closed_policy() -> Iterator[None]:
    yield
    configure_policy(PolicyDefaults())  # the process-wide default, as a reconciler without settings has it


def record(**fields: object) -> AgentRecord:
    return AgentRecord(agent_id="a1", display_name="host", **fields)  # type: ignore[arg-type]


def test_by_default_an_agent_may_publish_no_wildcard_no_apex_and_no_denied_origin() -> None:
    view = view_of(record(status="active", tunnel_id="t1"))
    assert view is not None
    assert (view.allow_wildcard, view.allow_apex, view.origin_allow, view.enrolled) == (False, False, frozenset(), True)


def test_the_agents_own_policy_widens_the_global_one() -> None:
    defaults = PolicyDefaults(allow_wildcard=True, origin_allow=frozenset({"unix"}))
    view = view_of(record(tunnel_id="t1", allow_apex=True, origin_allow=("metadata",)), defaults)
    assert view is not None
    assert (view.allow_wildcard, view.allow_apex, view.origin_allow) == (True, True, frozenset({"unix", "metadata"}))
    # An agent flag that is off does not switch the global default off.
    assert view_of(record(tunnel_id="t1", allow_wildcard=False), defaults).allow_wildcard  # type: ignore[union-attr]


def test_the_global_policy_comes_from_the_settings_configured_at_start_up() -> None:
    settings = load_reconciler({"FLAREPORT_AGENT_ORIGIN_ALLOW": "bastion", "FLAREPORT_AGENT_ALLOW_APEX": "1"})
    configure_policy(PolicyDefaults.of(settings))
    view = view_of(record(tunnel_id="t1"))
    assert view is not None and (view.origin_allow, view.allow_apex) == (frozenset({"bastion"}), True)


@pytest.mark.parametrize(
    ("fields", "enrolled"),
    [
        ({}, False),  # registered only: a key, no enrolment
        ({"tunnel_name": "flareport-a1"}, True),  # enrolled, tunnel being created
        ({"tunnel_id": "t1", "status": "active"}, True),
        ({"tunnel_id": "t1", "status": "offline"}, True),  # offline is still enrolled
    ],
)
def test_enrolled_means_an_admin_enrolled_it(fields: dict[str, object], enrolled: bool) -> None:
    view = view_of(record(**fields))
    assert view is not None and view.enrolled is enrolled


def test_retired_agents_have_no_view() -> None:
    assert view_of(record(tunnel_id="t1", status="decommissioned")) is None
