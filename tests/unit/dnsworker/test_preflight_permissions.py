"""The permission names the dns-worker reports and the ones the emulator enforces are the same table: every
endpoint the worker calls needs, in the emulator, exactly the permission the worker names when it is refused."""

from __future__ import annotations

import pytest

from flareport_cfemu.tokens import TokenPolicy, required_permission
from flareport_dns_worker.cfclient import permission_for

WRITES = [
    "POST /zones/{zone_id}/dns_records/batch",
    "PATCH /zones/{zone_id}/dns_records/{dns_record_id}",
    "POST /accounts/{account_id}/cfd_tunnel",
    "PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations",
    "DELETE /accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections",
    "POST /accounts/{account_id}/access/apps",
    "PUT /accounts/{account_id}/access/policies/{policy_id}",
    "POST /accounts/{account_id}/access/tags",
]
READS = [
    ("GET /zones", "Zone > Zone > Read"),
    ("GET /accounts/{account_id}/members", "Account > Account Settings > Read"),
    (
        "GET /accounts/{account_id}/access/identity_providers",
        "Account > Access: Organizations, Identity Providers, and Groups > Read",
    ),
]


@pytest.mark.parametrize("endpoint", WRITES)
def test_a_write_needs_the_edit_permission_the_worker_names(endpoint: str) -> None:
    method, _, template = endpoint.partition(" ")
    assert required_permission(method, template) == permission_for(endpoint)
    assert permission_for(endpoint).endswith(" > Edit")


@pytest.mark.parametrize(("endpoint", "permission"), READS)
def test_the_reads_the_worker_names_as_read_permissions(endpoint: str, permission: str) -> None:
    method, _, template = endpoint.partition(" ")
    assert required_permission(method, template) == permission_for(endpoint) == permission


def test_verify_needs_no_permission_and_edit_implies_read() -> None:
    assert required_permission("GET", "/user/tokens/verify") is None
    assert required_permission("GET", "/accounts/{account_id}/tokens/verify") is None
    policy = TokenPolicy(permissions=frozenset({"Zone > DNS > Edit"}))
    assert policy.grants("Zone > DNS > Read") and policy.grants("Zone > DNS > Edit")
    assert not policy.grants("Zone > Zone > Read")
    read_only = TokenPolicy(permissions=frozenset({"Zone > DNS > Read"}))
    assert not read_only.grants("Zone > DNS > Edit")
    assert TokenPolicy(expires_on="2001-01-01T00:00:00Z").current_status() == "expired"
    assert not TokenPolicy(not_before="2999-01-01T00:00:00Z").usable()
