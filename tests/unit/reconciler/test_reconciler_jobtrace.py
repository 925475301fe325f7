"""Which trace a job carries: the oldest of the batch it was planned from, stamped with its commit; none outside."""

from __future__ import annotations

from flareport_common.messages.cfjobs import SyncDnsZone
from flareport_common.messages.events import ContainerStop
from flareport_common.messages.trace import Trace
from flareport_reconciler import jobtrace


def stop(api_us: int) -> ContainerStop:
    return ContainerStop(agent_id="a", seq=1, container_id="c", trace=Trace(id=f"t{api_us}", api_us=api_us))


def test_a_job_planned_from_a_batch_carries_its_oldest_trace_stamped_with_the_commit() -> None:
    events = [jobtrace.read(stop(30)), jobtrace.read(stop(10)), ContainerStop(agent_id="a", seq=2, container_id="d")]
    assert all(e.trace is None or e.trace.reconciler_us > 0 for e in events), "each event stamped when read"
    job = SyncDnsZone(zone_name="example.com", version="v1")
    with jobtrace.planning(events):
        traced = jobtrace.attach(job)
    assert isinstance(traced, SyncDnsZone) and traced.trace is not None
    assert traced.trace.id == "t10", "the event the API accepted first"
    assert traced.trace.committed_us >= traced.trace.reconciler_us > 0
    assert traced.version == job.version and traced.id == job.id, "the trace changes neither version nor id"


def test_a_job_planned_outside_a_batch_carries_none() -> None:
    job = SyncDnsZone(zone_name="example.com", version="v1")
    assert jobtrace.attach(job) is job, "after a result or in the background loop"
    with jobtrace.planning([ContainerStop(agent_id="a", seq=1, container_id="c")]):
        assert jobtrace.attach(job) is job, "a batch whose events carry no trace"
