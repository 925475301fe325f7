"""The dns-worker's trace hops: the control plane's share is observed once per event, at the first Cloudflare call
of any of its jobs; a job that fails observes nothing after its read."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from flareport_common.messages.base import new_id
from flareport_common.messages.trace import Trace
from flareport_common.tracing import now_us
from flareport_dns_worker import jobtrace


def count(hop: str) -> float:
    return REGISTRY.get_sample_value("flareport_trace_hop_seconds_count", {"hop": hop}) or 0.0


def test_an_events_two_jobs_observe_its_first_call_once() -> None:
    trace = Trace(id=new_id(), agent_us=now_us() - 5000, api_us=now_us() - 4000, committed_us=now_us() - 1000)
    before = {hop: count(hop) for hop in ("control_plane", "worker_to_first_call", "end_to_end")}
    for _ in range(2):  # the DNS job and the ingress job
        with jobtrace.handling(trace):
            jobtrace.cloudflare_call()
            jobtrace.cloudflare_call()  # later calls of a job are not its first
    assert count("control_plane") - before["control_plane"] == 1, "once per event"
    assert count("worker_to_first_call") - before["worker_to_first_call"] == 2, "once per job"
    assert count("end_to_end") - before["end_to_end"] == 2


def test_calls_outside_a_job_and_failed_jobs_observe_nothing_after_the_read() -> None:
    jobtrace.cloudflare_call()  # a client used outside a job (preflight, the tunnels list)
    before = count("worker_to_first_call"), count("commit_to_worker")

    def failing_job() -> None:
        with jobtrace.handling(Trace(id=new_id(), committed_us=now_us())):
            jobtrace.cloudflare_call()
            raise RuntimeError("Cloudflare unavailable: retried later")

    with pytest.raises(RuntimeError):
        failing_job()
    assert count("worker_to_first_call") == before[0], "a job that did not finish"
    assert count("commit_to_worker") == before[1] + 1, "its read is observed"
