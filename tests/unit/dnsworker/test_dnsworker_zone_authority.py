"""What a zone job may write: the name check, the job's zone as the only zone, and refused writes left out."""

from __future__ import annotations

import pytest

from flareport_common.messages.cfjobs import DesiredRecord
from flareport_common.messages.cfresults import CfError
from flareport_dns_worker.dns_plan import Delete, DnsPlan, Patch, Post, Wanted, plan_dns, record_body
from flareport_dns_worker.dns_sync import placed
from flareport_dns_worker.names import inside, name_problem
from flareport_dns_worker.refusals import fingerprint, without_refused
from flareport_dns_worker.zones import zone_problem

ZONES = {"example.test": "z1", "victim.test": "z2", "example.com": "z3", "dev.example.com": "z4"}
T1 = "11111111-1111-1111-1111-111111111111"


@pytest.mark.parametrize(
    "name",
    [
        "app.example.test",
        "*.example.test",
        "example.test",
        "a-b.c1.example.test",
        "APP.Example.Test.",
        "x" * 63 + ".t",
        ".".join(["a" * 61] * 4) + ".test1",  # 253 characters: the longest name there is
    ],
)
def test_names_flareport_writes_pass_the_check(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad_na!me.example.test", "label 'bad_na!me'"),
        ("a..b.example.test", "label ''"),
        ("-a.example.test", "label '-a'"),
        ("a-.example.test", "label 'a-'"),
        ("a.*.example.test", "label '*'"),
        ("*.*.example.test", "label '*'"),
        ("x" * 64 + ".example.test", "must be 1-63"),
        (".".join(["a" * 63] * 4) + ".test", "1-253 characters"),
        ("localhost", "fully qualified"),
        ("app.example.123", "numeric label"),
        ("", "1-253 characters"),
        ("caf\u00e9.example.test", "label 'caf\u00e9'"),
    ],
)
def test_names_that_could_sink_a_batch_are_refused_with_the_reason(name: str, reason: str) -> None:
    problem = name_problem(name)
    assert problem is not None and reason in problem, f"{name!r} must be refused naming {reason!r}, got {problem!r}"


def test_inside_means_the_zone_itself_or_a_name_under_it() -> None:
    assert inside("example.test", "example.test") and inside("a.b.example.test", "Example.Test.")
    assert inside("*.example.test", "example.test")
    assert not inside("badexample.test", "example.test") and not inside("pwn.victim.test", "example.test")
    assert not inside("example.test", ""), "an empty zone holds nothing"


def test_a_name_outside_the_jobs_zone_is_refused_even_when_another_zone_of_the_account_holds_it() -> None:
    problem = zone_problem("pwn.victim.test", "example.test", ZONES)
    assert problem is not None and "not inside zone example.test" in problem


def test_a_job_zone_the_account_lacks_is_refused_without_falling_back_to_a_suffix_that_exists() -> None:
    # dev.example.com is not a zone here, example.com is: the old fallback wrote into example.com.
    zones = {"example.com": "z3"}
    problem = zone_problem("a.dev.example.com", "dev.example.com", zones)
    assert problem is not None and "zone dev.example.com is not a zone of this Cloudflare account" in problem
    # The reconciler's two-label guess for example.co.uk is "co.uk": never a fallback to example.co.uk either.
    problem = zone_problem("app.example.co.uk", "co.uk", {"example.co.uk": "z9"})
    assert problem is not None and "not a zone of this Cloudflare account" in problem


def test_a_name_in_a_delegated_subzone_is_refused_in_the_parent_zone_and_names_the_subzone() -> None:
    problem = zone_problem("a.dev.example.com", "example.com", ZONES)
    assert problem is not None and "delegated zone dev.example.com" in problem
    assert zone_problem("a.dev.example.com", "dev.example.com", ZONES) is None
    assert zone_problem("dev.example.com", "dev.example.com", ZONES) is None, "a subzone's apex is its own"
    assert zone_problem("a.example.com", "example.com", ZONES) is None
    assert zone_problem("*.example.com", "EXAMPLE.com.", ZONES) is None


def test_placed_keeps_the_good_records_and_reports_each_bad_one_with_its_kind() -> None:
    records = (
        DesiredRecord(name="App.Example.Test", tunnel_id=T1),
        DesiredRecord(name="pwn.victim.test", tunnel_id=T1),
        DesiredRecord(name="bad_na!me.example.test", tunnel_id=T1),
        DesiredRecord(name="ok.example.test", tunnel_id=T1, adopt=True),
    )
    wanted, errors = placed(records, "example.test", ZONES)
    assert wanted == [Wanted("app.example.test", T1), Wanted("ok.example.test", T1, adopt=True)]
    assert [(e.hostname, e.kind) for e in errors] == [
        ("pwn.victim.test", "zone"),
        ("bad_na!me.example.test", "invalid"),
    ], "the hostname is the one the rule carries, so the reconciler can show the error on it"


def test_a_fingerprint_changes_with_the_body_so_a_fixed_record_is_tried_again() -> None:
    post = Post("a.example.test", record_body(Wanted("a.example.test", T1), "fp"))
    other_tunnel = Post("a.example.test", record_body(Wanted("a.example.test", "t2"), "fp"))
    assert fingerprint(post) == fingerprint(Post("a.example.test", dict(post.body)))
    assert fingerprint(post) != fingerprint(other_tunnel)
    assert fingerprint(Patch("r1", "a.example.test", post.body)) != fingerprint(post)
    assert fingerprint(Delete("r1", "a.example.test")) != fingerprint(Delete("r2", "a.example.test"))


def test_writes_refused_before_are_left_out_of_the_plan_and_reported_again() -> None:
    plan = plan_dns({}, [Wanted("a.example.test", T1), Wanted("b.example.test", T1)], "fp")
    refused_post = next(p for p in plan.posts if p.name == "b.example.test")
    error = CfError(code=81045, message="Record quota exceeded.", hostname="b.example.test", kind="invalid")
    kept, again = without_refused(plan, {fingerprint(refused_post): error})
    assert [p.name for p in kept.posts] == ["a.example.test"]
    assert again == [error]
    assert without_refused(plan, {}) == (plan, [])
    assert isinstance(kept, DnsPlan) and kept.managed == plan.managed
