"""The DNS plan: ownership, conflicts, adoption, cleanup and batching, with no I/O."""

from __future__ import annotations

from flareport_common.messages.cfresults import CfError
from flareport_dns_worker.dns_plan import (
    DnsRecord,
    Wanted,
    marker,
    owner_of,
    plan_dns,
    record_body,
    tunnel_target,
)
from flareport_dns_worker.refusals import fingerprint, without_refused

OWNER = "fp-prod"
T1 = "11111111-1111-1111-1111-111111111111"
T2 = "22222222-2222-2222-2222-222222222222"


def ours(name: str, tunnel: str = T1, *, rid: str = "r1", owner: str = OWNER) -> DnsRecord:
    return DnsRecord(
        id=rid, name=name, type="CNAME", content=tunnel_target(tunnel), proxied=True, comment=marker(owner)
    )


def test_marker_fits_cloudflare_free_comment_limit_and_parses_back() -> None:
    comment = marker("x" * 60)
    assert len(comment) <= 100, "the ownership comment must fit Cloudflare Free's 100-character comment limit"
    assert owner_of(comment) == "x" * 60
    assert owner_of("hand-made record") is None
    assert owner_of(None) is None


def test_missing_record_is_created_with_ownership_comment() -> None:
    plan = plan_dns({}, [Wanted("app.example.com", T1)], OWNER)
    assert [p.body for p in plan.posts] == [record_body(Wanted("app.example.com", T1), OWNER)]
    body = plan.posts[0].body
    assert body["proxied"] is True and body["ttl"] == 1 and body["comment"] == "managed-by=flareport owner=fp-prod"
    assert plan.managed == {"app.example.com"}


def test_matching_record_costs_nothing() -> None:
    plan = plan_dns({"app.example.com": [ours("app.example.com")]}, [Wanted("app.example.com", T1)], OWNER)
    assert plan.writes == 0 and not plan.conflicts


def test_our_record_pointing_elsewhere_is_patched_in_place() -> None:
    plan = plan_dns({"app.example.com": [ours("app.example.com", T2)]}, [Wanted("app.example.com", T1)], OWNER)
    assert [(p.record_id, p.body["content"]) for p in plan.patches] == [("r1", tunnel_target(T1))]
    assert not plan.posts and not plan.deletes


def test_foreign_record_on_wanted_name_is_a_conflict_and_untouched() -> None:
    foreign = DnsRecord(id="f1", name="app.example.com", type="A", content="192.0.2.1", comment="by hand")
    plan = plan_dns({"app.example.com": [foreign]}, [Wanted("app.example.com", T1)], OWNER)
    assert plan.writes == 0, "a record without our marker must never be written"
    assert [(c.kind, c.hostname) for c in plan.conflicts] == [("conflict", "app.example.com")]
    assert "not managed by Flareport" in plan.conflicts[0].message


def test_record_of_another_flareport_owner_is_a_conflict() -> None:
    theirs = ours("app.example.com", owner="fp-staging")
    plan = plan_dns({"app.example.com": [theirs]}, [Wanted("app.example.com", T1)], OWNER)
    assert plan.writes == 0
    assert "fp-staging" in plan.conflicts[0].message


def test_adopt_takes_over_a_foreign_cname_in_place() -> None:
    foreign = DnsRecord(id="f1", name="app.example.com", type="CNAME", content="old.example.net")
    plan = plan_dns({"app.example.com": [foreign]}, [Wanted("app.example.com", T1, adopt=True)], OWNER)
    assert [p.record_id for p in plan.patches] == ["f1"]
    assert plan.patches[0].body["comment"] == marker(OWNER)
    assert not plan.conflicts and not plan.posts and not plan.deletes


def test_adopt_replaces_foreign_address_records() -> None:
    a = DnsRecord(id="a1", name="app.example.com", type="A", content="192.0.2.1")
    aaaa = DnsRecord(id="a2", name="app.example.com", type="AAAA", content="2001:db8::1")
    plan = plan_dns({"app.example.com": [a, aaaa]}, [Wanted("app.example.com", T1, adopt=True)], OWNER)
    assert sorted(d.record_id for d in plan.deletes) == ["a1", "a2"]
    assert [p.name for p in plan.posts] == ["app.example.com"]


def test_unrelated_record_types_on_the_name_are_not_in_the_way() -> None:
    txt = DnsRecord(id="t1", name="app.example.com", type="TXT", content="v=spf1 -all")
    plan = plan_dns({"app.example.com": [txt]}, [Wanted("app.example.com", T1)], OWNER)
    assert [p.name for p in plan.posts] == ["app.example.com"] and not plan.conflicts


def test_names_no_longer_wanted_are_deleted_only_when_ours() -> None:
    current = {
        "old.example.com": [ours("old.example.com", rid="o1")],
        "gone.example.com": [DnsRecord(id="g1", name="gone.example.com", type="CNAME", content="x.example.net")],
        "other.example.com": [ours("other.example.com", rid="x1", owner="someone-else")],
    }
    plan = plan_dns(current, [], OWNER, managed={"old.example.com", "gone.example.com", "other.example.com"})
    assert [d.record_id for d in plan.deletes] == ["o1"]


def test_records_this_target_never_wrote_are_not_cleaned_up() -> None:
    plan = plan_dns({"old.example.com": [ours("old.example.com")]}, [], OWNER, managed=set())
    assert plan.writes == 0


def test_wildcard_and_case_are_normalised() -> None:
    plan = plan_dns({}, [Wanted("*.Apps.Example.com.", T1)], OWNER)
    assert [p.name for p in plan.posts] == ["*.apps.example.com"]


def test_batches_keep_deletes_before_posts_and_respect_size() -> None:
    current = {f"old{i}.example.com": [ours(f"old{i}.example.com", rid=f"o{i}")] for i in range(3)}
    wanted = [Wanted(f"new{i}.example.com", T1) for i in range(4)]
    plan = plan_dns(current, wanted, OWNER, managed=set(current))
    chunks = plan.batches(2)
    assert [c.writes for c in chunks] == [2, 2, 2, 1]
    assert [len(c.deletes) for c in chunks] == [2, 1, 0, 0]
    assert sum(len(c.posts) for c in chunks) == 4


def test_from_api_normalises_cloudflare_fields() -> None:
    record = DnsRecord.from_api(
        {"id": "x", "name": "App.Example.com", "type": "cname", "content": "T.cfargotunnel.com.", "proxied": True}
    )
    assert (record.name, record.type, record.content, record.comment) == (
        "app.example.com",
        "CNAME",
        "t.cfargotunnel.com",
        None,
    )


def test_without_prune_names_no_longer_wanted_are_kept_and_stay_managed() -> None:
    current = {
        "app.example.com": [ours("app.example.com", T2, rid="a1")],
        "old.example.com": [ours("old.example.com", rid="o1")],
        "gone.example.com": [DnsRecord(id="g1", name="gone.example.com", type="CNAME", content="x.example.net")],
    }
    managed = {"app.example.com", "old.example.com", "gone.example.com"}
    wanted = [Wanted("app.example.com", T1), Wanted("new.example.com", T1)]

    kept = plan_dns(current, wanted, OWNER, managed, prune=False)
    assert not kept.deletes, "without prune, a record of ours that is no longer listed must not be deleted"
    assert [p.record_id for p in kept.patches] == ["a1"] and [p.name for p in kept.posts] == ["new.example.com"], (
        "listed records are still created and updated without prune"
    )
    assert kept.managed == {"app.example.com", "new.example.com", "old.example.com"}, (
        "a kept record must stay managed so that a later pruning job removes it; a name we hold nothing on is dropped"
    )

    # The next job prunes: the name kept above is in the target's managed names, so its record goes.
    pruned = plan_dns(current, wanted, OWNER, kept.managed, prune=True)
    assert [d.record_id for d in pruned.deletes] == ["o1"]
    assert "old.example.com" not in pruned.managed


def test_without_prune_conflicts_and_foreign_records_are_unaffected() -> None:
    foreign = DnsRecord(id="f1", name="mail.example.com", type="A", content="192.0.2.1")
    plan = plan_dns({"mail.example.com": [foreign]}, [Wanted("mail.example.com", T1)], OWNER, prune=False)
    assert plan.writes == 0 and [c.hostname for c in plan.conflicts] == ["mail.example.com"]
    theirs = {"x.example.com": [ours("x.example.com", owner="someone-else")]}
    plan = plan_dns(theirs, [], OWNER, {"x.example.com"}, prune=False)
    assert plan.writes == 0 and not plan.managed, "another owner's record is neither written nor claimed"


def unowned(name: str, tunnel: str = T1, *, rid: str = "d1", comment: str | None = None) -> DnsRecord:
    """A record as DockFlare leaves it: a proxied CNAME to its tunnel, no comment."""
    return DnsRecord(id=rid, name=name, type="CNAME", content=tunnel_target(tunnel), proxied=True, comment=comment)


def test_a_commentless_proxied_cname_to_the_wanted_tunnel_is_adopted_in_place() -> None:
    plan = plan_dns({"app.example.com": [unowned("app.example.com")]}, [Wanted("app.example.com", T1)], OWNER)

    assert not plan.deletes and not plan.posts and not plan.conflicts, "adoption must not delete or recreate"
    assert [(p.record_id, p.body) for p in plan.patches] == [("d1", record_body(Wanted("app.example.com", T1), OWNER))]
    assert plan.managed == {"app.example.com"}
    assert "app.example.com" in plan.adopted and "ownership comment added" in plan.adopted["app.example.com"]


def test_only_exactly_our_shape_is_adopted_without_being_asked() -> None:
    wanted = [Wanted("app.example.com", T1)]
    not_ours = {
        "another tunnel": [unowned("app.example.com", T2)],
        "not proxied": [DnsRecord(id="d1", name="app.example.com", type="CNAME", content=tunnel_target(T1))],
        "a comment someone wrote": [unowned("app.example.com", comment="hand-made, keep")],
        "another Flareport instance": [unowned("app.example.com", comment=marker("fp-other"))],
        "an address record": [DnsRecord(id="d1", name="app.example.com", type="A", content="192.0.2.1")],
        "a second record beside it": [
            unowned("app.example.com"),
            DnsRecord(id="d2", name="app.example.com", type="AAAA", content="2001:db8::1"),
        ],
    }
    for why, records in not_ours.items():
        plan = plan_dns({"app.example.com": records}, wanted, OWNER)
        assert plan.writes == 0 and not plan.adopted, f"{why}: must stay untouched"
        assert [c.kind for c in plan.conflicts] == ["conflict"], why


def test_an_adoption_refused_before_is_not_reported_again() -> None:
    plan = plan_dns({"app.example.com": [unowned("app.example.com")]}, [Wanted("app.example.com", T1)], OWNER)
    refused = {fingerprint(plan.patches[0]): CfError(message="refused", hostname="app.example.com")}

    kept, again = without_refused(plan, refused)

    assert not kept.patches and not kept.adopted
    assert [e.message for e in again] == ["refused"]
