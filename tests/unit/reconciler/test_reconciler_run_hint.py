"""What a batch's ``starting`` hint (containers created and not yet started on the agent's host) tells coalescing:
the newest event of the batch speaks for it."""

from __future__ import annotations

import pytest

from flareport_common.messages.events import ContainerStart, ContainerStop
from flareport_common.messages.rules import ContainerInfo
from flareport_reconciler.coalesce import Run
from flareport_reconciler.spine import run_of


def start(seq: int, starting: int | None) -> ContainerStart:
    info = ContainerInfo(container_id=f"c{seq}", name="web")
    return ContainerStart(agent_id="a1", seq=seq, container=info, starting=starting)


@pytest.mark.parametrize(
    ("starting", "run"),
    [(None, Run.NONE), (0, Run.ENDED), (1, Run.NEXT), (2, Run.MORE), (40, Run.MORE)],
)
def test_the_count_of_containers_still_to_start_becomes_the_runs_word(starting: int | None, run: Run) -> None:
    assert run_of([start(1, starting)]) == run


def test_the_newest_event_of_a_batch_speaks_for_it_whatever_the_order_it_came_in() -> None:
    stop = ContainerStop(agent_id="a1", seq=3, container_id="c0", starting=0)
    assert run_of([start(2, 5), stop, start(1, 7)]) == Run.ENDED
