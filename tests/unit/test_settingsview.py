"""Effective settings as shown to an admin: every field of every service's settings, no secret in clear."""

from __future__ import annotations

import dataclasses
from typing import Any

from flareport_common.redissettings import RedisNodes
from flareport_common.settings import (
    AgentSettings,
    ApiSettings,
    CloudflareSettings,
    CommonSettings,
    DnsWorkerSettings,
    ReconcilerSettings,
)
from flareport_common.settingsview import HIDDEN, rows

SECRET = "s3cret-value-that-must-not-show"


def with_every_secret(cls: type[Any], **required: Any) -> Any:
    """``cls`` with every repr=False string field set to a recognisable secret (nested settings included)."""
    common = CommonSettings(
        redis_url=f"redis://user:{SECRET}@redis:6379/0",
        redis_nodes=RedisNodes(password=SECRET, sentinel_password=SECRET),
    )
    names = {field.name for field in dataclasses.fields(cls)}
    values = {"common": common, **required} if "common" in names else dict(required)
    for field in dataclasses.fields(cls):
        if not field.repr and field.name not in values:
            values[field.name] = SECRET
    return cls(**values)


def test_no_secret_of_any_service_is_shown_and_every_field_is() -> None:
    for settings in (
        with_every_secret(ApiSettings),
        with_every_secret(ReconcilerSettings),
        with_every_secret(DnsWorkerSettings, cloudflare=CloudflareSettings(api_token=SECRET, account_id="acc")),
        with_every_secret(AgentSettings, master_url=f"https://agent:{SECRET}@master.example.com"),
    ):
        shown = dict(rows(settings))
        assert SECRET not in " ".join(shown.values()), f"{type(settings).__name__} shows a secret"
        if "common.redis_url" in shown:
            assert shown["common.redis_url"] == "redis://user:***@redis:6379/0", "which Redis, not its password"
            assert shown["common.redis_nodes.password"] == HIDDEN
        top = {f.name for f in dataclasses.fields(settings)} - {"common"}
        assert top <= {name.split(".")[0] for name in shown}, "every setting is listed"


def test_values_read_as_an_admin_would_type_them() -> None:
    settings = ApiSettings(
        common=CommonSettings(redis_url="redis://redis:6379/0"),
        master_api_key=SECRET,
        revoked_agent_keys=frozenset({"key_b", "key_a"}),
        trusted_proxies=("10.0.0.0/8",),
    )
    shown = dict(rows(settings))
    assert shown["common.redis_url"] == "redis://redis:6379/0", "a URL without a password is shown as it is"
    assert shown["master_api_key"] == HIDDEN and shown["admin_password"] == "not set"
    assert (shown["revoked_agent_keys"], shown["trusted_proxies"]) == ("key_a, key_b", "10.0.0.0/8")
    assert (shown["ui_password_login"], shown["quotas.longpolls"]) == ("true", "2")
