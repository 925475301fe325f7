"""The API's strict input structs mirror the shared ones field for field (they differ only in refusing unknown
fields), so a field added to a shared struct cannot silently become impossible to set through the API."""

from __future__ import annotations

import msgspec
import pytest

from flareport_api.schemas import AccessGroup, AccessGroupRequest, AccessInput, OriginInput, RuleInput
from flareport_common.messages import AccessSpec, OriginOptions, Rule
from flareport_common.messages.intents import AccessGroupUpserted


@pytest.mark.parametrize(
    ("strict", "shared"),
    [(OriginInput, OriginOptions), (AccessInput, AccessSpec), (RuleInput, Rule)],
    ids=["origin", "access", "rule"],
)
def test_input_struct_has_the_shared_fields(strict: type[msgspec.Struct], shared: type[msgspec.Struct]) -> None:
    assert strict.__struct_fields__ == shared.__struct_fields__


def test_access_group_request_has_the_intent_fields() -> None:
    envelope = {"id", "occurred_at", "schema_version", "correlation_id"}
    definition = set(AccessGroupUpserted.__struct_fields__) - envelope - {"group_id"}
    assert set(AccessGroupRequest.__struct_fields__) == definition
    assert set(AccessGroup.__struct_fields__) == definition | {"group_id", "updated_at", "system", "description"}
