"""Rule statuses from job results: active when every part is applied, errors name Cloudflare's reason."""

from __future__ import annotations

from datetime import UTC, datetime

from flareport_common.messages import AccessSpec, CfError, JobResult
from flareport_common.messages.cfresults import CfNote
from flareport_common.readmodel import RuleRecord
from flareport_reconciler.rules import carry_states, rule_status, with_result


def doc(**fields: object) -> RuleRecord:
    fields = {"service": "http://web:80", **fields}
    return RuleRecord(key="app.example.com", hostname="app.example.com", **fields)  # type: ignore[arg-type]


def result(job_type: str, *errors: CfError, ok: bool = True) -> JobResult:
    return JobResult(job_id="j", job_type=job_type, target="t", ok=ok, errors=errors)


def test_a_rule_is_active_once_its_record_and_its_ingress_are_applied() -> None:
    half = with_result(doc(), result("sync_dns_zone"))
    assert (half.status, half.dns_state) == ("pending", "active")
    full = with_result(half, result("sync_tunnel_ingress"))
    assert (full.status, full.error) == ("active", None)


def test_a_rule_asking_for_access_also_waits_for_its_access_app() -> None:
    base = doc(access=AccessSpec(policy="authenticate"), dns_state="active", ingress_state="active")
    assert rule_status(base)[0] == "pending"
    assert with_result(base, result("sync_access_app")).status == "active"


def test_cloudflare_errors_for_the_rules_hostname_make_it_error_or_conflict() -> None:
    refused = CfError(code=1004, message="DNS Validation Error", hostname="app.example.com")
    failed = with_result(doc(), result("sync_dns_zone", refused))
    assert (failed.status, failed.error, failed.error_code) == ("error", "DNS Validation Error", 1004)
    foreign = CfError(message="a record without our marker exists", hostname="APP.example.com", kind="conflict")
    conflict = with_result(doc(), result("sync_dns_zone", foreign))
    assert (conflict.status, conflict.error) == ("conflict", "a record without our marker exists")


def test_errors_about_other_hostnames_do_not_touch_the_rule() -> None:
    other = CfError(message="nope", hostname="other.example.com")
    assert with_result(doc(ingress_state="active"), result("sync_dns_zone", other)).status == "active"


def test_a_failed_job_without_details_is_an_error() -> None:
    failed = with_result(doc(), result("sync_tunnel_ingress", ok=False))
    assert (failed.status, failed.error) == ("error", "sync_tunnel_ingress failed")


def test_pending_deletion_wins_over_applied_state() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert rule_status(doc(dns_state="active", ingress_state="active", delete_at=when))[0] == "pending_deletion"


def test_a_refresh_keeps_the_applied_state_of_parts_whose_inputs_did_not_change() -> None:
    old = doc(tunnel_id="t1", dns_state="active", ingress_state="active", status="active")
    new_service = RuleRecord(key=old.key, hostname=old.hostname, service="http://web:8080", tunnel_id="t1")
    carry_states(old, new_service)
    assert (new_service.dns_state, new_service.ingress_state) == ("active", None)
    assert rule_status(new_service)[0] == "pending"
    new_tunnel = RuleRecord(key=old.key, hostname=old.hostname, service=old.service, tunnel_id="t2")
    carry_states(old, new_tunnel)
    assert (new_tunnel.dns_state, new_tunnel.ingress_state) == (None, None)


def test_an_adoption_reported_by_a_job_is_shown_on_the_rule_and_kept_while_its_part_is_unchanged() -> None:
    note = CfNote(hostname="APP.example.com", message="CNAME adopted in place")
    other = CfNote(hostname="other.example.com", message="not this rule")
    adopted = with_result(
        doc(), JobResult(job_id="j", job_type="sync_dns_zone", target="t", ok=True, notes=(note, other))
    )
    assert adopted.adopted == {"dns": "CNAME adopted in place"}

    same_record = doc(service="http://web:8080")
    carry_states(adopted, same_record)
    assert same_record.adopted == {"dns": "CNAME adopted in place"}, "a new service keeps the record, and its story"

    moved = doc(tunnel_id="another-tunnel")
    carry_states(adopted, moved)
    assert moved.adopted == {}, "a record for another tunnel is a new record: nothing adopted about it"
