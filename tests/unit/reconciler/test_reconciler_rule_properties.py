"""Properties of rule statuses (``rules``) over generated sequences of job results: a result delivered again
changes nothing, a result sets only its own part, and a rule is active exactly when every part it needs is."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flareport_common.messages import AccessSpec, CfError, JobResult
from flareport_common.readmodel import RuleRecord
from flareport_reconciler.rules import STATE_FIELDS, rule_status, with_result

PARTS = sorted(STATE_FIELDS)
ERRORS = [
    CfError(message="refused", code=1004, hostname="app.example.com"),
    CfError(message="foreign record", hostname="app.example.com", kind="conflict"),
    CfError(message="another rule's", hostname="other.example.com"),
    CfError(message="another path's", hostname="app.example.com", path="/other"),
]

results = st.builds(
    lambda job_type, errors, ok: JobResult(job_id="j", job_type=job_type, target="t", ok=ok, errors=tuple(errors)),
    st.sampled_from(PARTS),
    st.lists(st.sampled_from(ERRORS), max_size=2),
    st.booleans(),
)
docs = st.builds(
    lambda access: RuleRecord(
        key="app.example.com", hostname="app.example.com", service="http://web:80", access=access
    ),
    st.sampled_from([None, AccessSpec(policy="authenticate")]),
)


@settings(max_examples=200, deadline=None)
@given(docs, st.lists(results, max_size=6))
def test_a_result_delivered_again_changes_nothing(doc: RuleRecord, history: list[JobResult]) -> None:
    for result in history:
        doc = with_result(doc, result)
        assert with_result(doc, result) == doc, "the same result twice is the same as once"


@settings(max_examples=200, deadline=None)
@given(docs, st.lists(results, max_size=6), results)
def test_a_result_sets_its_own_part_only(doc: RuleRecord, history: list[JobResult], last: JobResult) -> None:
    for result in history:
        doc = with_result(doc, result)
    after = with_result(doc, last)
    for job_type, field in STATE_FIELDS.items():
        if job_type != last.job_type:
            assert getattr(after, field) == getattr(doc, field), f"{last.job_type} changed {field}"
    assert getattr(after, STATE_FIELDS[last.job_type]) in ("active", "error", "conflict")


@settings(max_examples=200, deadline=None)
@given(docs, st.lists(results, max_size=8))
def test_a_rule_is_active_exactly_when_every_part_it_needs_is(doc: RuleRecord, history: list[JobResult]) -> None:
    for result in history:
        doc = with_result(doc, result)
    needed = ["dns_state", "ingress_state"] + (["access_state"] if doc.access is not None else [])
    assert (doc.status == "active") == all(getattr(doc, f) == "active" for f in needed)
    assert doc.status == rule_status(doc)[0], "the stored status is the one derived from the parts"
    if doc.status in ("active", "pending"):
        assert doc.error is None and doc.error_code is None, "no stale error on a rule that has none"
