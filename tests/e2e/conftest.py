"""Shared fixtures of the system tests: each module gets one whole stack (``E2EStack``), stopped even on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flareport_cli.localpodman import podman_available
from fptest.e2e_stack import E2EStack

StackFactory = Callable[..., E2EStack]


@pytest.fixture(scope="module")
def stack_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    if not podman_available():
        pytest.skip("podman and runc are needed for the system tests (`make deps` installs them)")
    stacks: list[E2EStack] = []

    def make(**settings: str) -> E2EStack:
        workdir: Path = tmp_path_factory.mktemp("e2e")
        stack = E2EStack(workdir, settings)
        stacks.append(stack)
        return stack.start()

    try:
        yield make
    finally:
        for stack in reversed(stacks):
            stack.close()
