"""The dns-worker's own settings: defaults, bounds and the owner id that must fit a DNS comment."""

from __future__ import annotations

import pytest

from flareport_common.errors import SettingsError
from flareport_common.settings import load_dns_worker

BASE = {"CLOUDFLARE_API_TOKEN": "t", "CLOUDFLARE_ACCOUNT_ID": "a"}


def test_defaults_match_cloudflare_free_plan_and_documented_values() -> None:
    settings = load_dns_worker(BASE)
    assert settings.dns_batch_size == 200
    assert settings.owner_id == "flareport" and settings.access_tag == "flareport"
    assert settings.target_lease_ms == 15_000 and settings.max_call_attempts == 5


def test_batch_size_beyond_cloudflares_largest_plan_is_refused() -> None:
    with pytest.raises(SettingsError, match="CLOUDFLARE_DNS_BATCH_SIZE"):
        load_dns_worker({**BASE, "CLOUDFLARE_DNS_BATCH_SIZE": "5000"})


@pytest.mark.parametrize("owner", ["x" * 61, "has space", "semi;colon"])
def test_owner_id_that_would_not_fit_or_parse_in_a_dns_comment_is_refused(owner: str) -> None:
    with pytest.raises(SettingsError, match="FLAREPORT_OWNER_ID"):
        load_dns_worker({**BASE, "FLAREPORT_OWNER_ID": owner})


def test_the_access_owner_email_is_one_address_or_unset() -> None:
    assert load_dns_worker(BASE).access_owner_email is None
    assert load_dns_worker({**BASE, "FLAREPORT_ACCESS_OWNER_EMAIL": " Me@Example.com "}).access_owner_email == (
        "me@example.com"
    ), "as the reconciler reads it"
    for bad in ("me", "a@b.c,d@e.f", "a b@example.com"):
        with pytest.raises(SettingsError, match="FLAREPORT_ACCESS_OWNER_EMAIL"):
            load_dns_worker({**BASE, "FLAREPORT_ACCESS_OWNER_EMAIL": bad})
