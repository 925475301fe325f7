"""Shared fixtures of the system tests: each module gets one whole stack (``E2EStack``), stopped even on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flareport_cli.localpodman import podman_available
from fptest.e2e_stack import E2EStack, Host

StackFactory = Callable[..., E2EStack]


@dataclass
class Enrolled:
    """A module's stack with its first agent registered and enrolled (its cloudflared running)."""

    stack: E2EStack
    host: Host
    agent_id: str
    tunnel_id: str


def enrol_first_agent(stack: E2EStack, tunnel_name: str) -> Enrolled:
    agent_id = stack.wait_new_agent(set())["agent_id"]
    tunnel_id = stack.enroll(agent_id, tunnel_name)
    return Enrolled(stack, stack.hosts["host1"], agent_id, tunnel_id)


# Stacks of the running module, so a failing test's report can show what the services said.
_LIVE: list[E2EStack] = []
TAIL_LINES = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when not in ("setup", "call") or not report.failed:  # a module's stack fixture fails at setup
        return
    for stack in _LIVE:
        if stack.dev is None:
            continue
        for child in stack.supervisor.children:
            tail = "\n".join(child.lines[-TAIL_LINES:])
            report.sections.append((f"last {TAIL_LINES} lines of {child.name}", tail))


@pytest.fixture(scope="module")
def stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    if not podman_available():
        pytest.skip("podman and runc are needed for the system tests (`make deps` installs them)")
    stacks: list[E2EStack] = []

    def make(**settings: str) -> E2EStack:
        workdir: Path = tmp_path_factory.mktemp("e2e")
        stack = E2EStack(workdir, settings)
        stacks.append(stack)
        _LIVE.append(stack)
        return stack.start()

    try:
        yield make
    finally:
        for stack in reversed(stacks):
            _LIVE.remove(stack)
            stack.close()
