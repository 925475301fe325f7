"""DockFlare's choice of the account owner among the members, and the One-time PIN login method."""

from __future__ import annotations

from typing import Any

from flareport_dns_worker.access_facts import pick_otp_idp_id, pick_owner_email


def member(email: str, *roles: dict[str, Any], nested: bool = True) -> dict[str, Any]:
    if nested:
        return {"id": email, "user": {"email": email}, "roles": list(roles)}
    return {"id": email, "email": email, "roles": list(roles)}


def test_the_first_privileged_member_is_the_owner_else_the_first_member() -> None:
    billing = {"name": "Billing", "permissions": {"analytics": {"read": False}}}
    assert pick_owner_email([member("a@x.test", billing), member("b@x.test", {"name": "Administrator"})]) == "b@x.test"
    assert pick_owner_email([member("a@x.test", billing), member("c@x.test", {"name": "Account OWNER"})]) == "c@x.test"
    analytics = {"name": "Analytics", "permissions": {"analytics": {"read": True, "write": False}}}
    assert pick_owner_email([member("a@x.test", billing), member("d@x.test", analytics, nested=False)]) == "d@x.test"
    # "Administrator Read Only" is not exactly "Administrator": no match, so the first member.
    assert pick_owner_email([member("a@x.test", billing), member("e@x.test", {"name": "Administrator Read Only"})]) == (
        "a@x.test"
    )
    assert pick_owner_email([]) is None


def test_the_one_time_pin_provider_is_found_by_type() -> None:
    providers = [{"id": "g", "type": "github"}, {"id": "otp", "type": "onetimepin"}]
    assert pick_otp_idp_id(providers) == "otp"
    assert pick_otp_idp_id(providers[:1]) is None
