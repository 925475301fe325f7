"""Settings from the environment: defaults, DockFlare aliases, and one clear line for every bad value."""

from __future__ import annotations

import pytest

from flareport_common.errors import SettingsError
from flareport_common.settings import load_agent, load_api, load_dns_worker, load_or_exit, load_reconciler

AGENT_ENV = {"FLAREPORT_MASTER_URL": "https://master.example.com", "FLAREPORT_API_KEY": "key"}


def test_agent_defaults() -> None:
    settings = load_agent(AGENT_ENV)
    assert settings.data_dir == "/app/data"
    assert settings.cloudflared_image.startswith("cloudflare/cloudflared:")
    assert settings.docker_host is None and settings.label_prefix is None
    assert settings.event_streams == "auto"
    assert load_agent({**AGENT_ENV, "AGENT_EVENT_STREAMS": "1"}).event_streams == "1"


def test_dockflare_aliases_are_accepted_and_flareport_names_win() -> None:
    dockflare = load_agent({"DOCKFLARE_MASTER_URL": "http://m:5000", "DOCKFLARE_API_KEY": "old"})
    assert (dockflare.master_url, dockflare.api_key) == ("http://m:5000", "old")
    both = load_agent({**AGENT_ENV, "DOCKFLARE_API_KEY": "old"})
    assert both.api_key == "key"
    worker = load_dns_worker({"CF_API_TOKEN": "tok", "CF_ACCOUNT_ID": "acc", "CF_ZONE_ID": "zone"})
    assert (worker.cloudflare.api_token, worker.cloudflare.account_id, worker.cloudflare.default_zone_id) == (
        "tok",
        "acc",
        "zone",
    )
    assert worker.cloudflare.rate_limit_requests == 1200 and worker.cloudflare.rate_limit_window_seconds == 300


@pytest.mark.parametrize(
    ("loader", "env", "message"),
    [
        (
            load_agent,
            {"FLAREPORT_API_KEY": "k"},
            "FLAREPORT_MASTER_URL (or DOCKFLARE_MASTER_URL): required but not set",
        ),
        (
            load_agent,
            {**AGENT_ENV, "FLAREPORT_MASTER_URL": "ftp://x"},
            "FLAREPORT_MASTER_URL: expected a http/https URL",
        ),
        (load_agent, {**AGENT_ENV, "CLOUDFLARED_IMAGE": "cloudflared"}, "CLOUDFLARED_IMAGE: expected repo:tag or"),
        (load_agent, {**AGENT_ENV, "CLOUDFLARED_IMAGE": "c/d@sha256:abc"}, "CLOUDFLARED_IMAGE: expected repo:tag or"),
        (load_agent, {**AGENT_ENV, "AGENT_EVENT_STREAMS": "3"}, "AGENT_EVENT_STREAMS: expected one of auto, 1, 2"),
        (load_api, {"MASTER_API_KEY": "short"}, "MASTER_API_KEY: must be at least 16 characters"),
        (
            load_api,
            {"MASTER_API_KEY": "x" * 20, "FLAREPORT_API_PORT": "80a"},
            "FLAREPORT_API_PORT: expected an integer",
        ),
        (load_api, {"MASTER_API_KEY": "x" * 20, "REDIS_DB_INDEX": "16"}, "REDIS_DB_INDEX: must be at most 15"),
        (
            load_api,
            {"MASTER_API_KEY": "x" * 20, "REDIS_URL": "http://r"},
            "REDIS_URL: expected a redis/rediss/unix URL",
        ),
        (
            load_api,
            {"MASTER_API_KEY": "x" * 20, "FLAREPORT_REVOKED_AGENT_KEYS": "key_0123456789abcdef, fpk_0123456789abcdef"},
            "FLAREPORT_REVOKED_AGENT_KEYS: 'fpk_0123456789abcdef' is not a key id",
        ),
        (load_reconciler, {"GRACE_PERIOD_SECONDS": "-1"}, "GRACE_PERIOD_SECONDS: must be at least 0"),
        (load_reconciler, {"LOG_LEVEL": "loud"}, "LOG_LEVEL: expected one of debug, info"),
        (
            load_reconciler,
            {"FLAREPORT_AGENT_ORIGIN_ALLOW": "unix, docker"},
            "FLAREPORT_AGENT_ORIGIN_ALLOW: unknown origin kind 'docker' (one of link-local, metadata, unix, bastion)",
        ),
        (load_reconciler, {"FLAREPORT_AGENT_ALLOW_APEX": "maybe"}, "FLAREPORT_AGENT_ALLOW_APEX: expected true/false"),
        (load_dns_worker, {"CLOUDFLARE_API_TOKEN": "t"}, "CLOUDFLARE_ACCOUNT_ID (or CF_ACCOUNT_ID): required"),
    ],
)
def test_bad_values_name_the_variable(loader: object, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        loader(env)  # type: ignore[operator]
    assert str(caught.value).startswith(message)


def test_revoked_agent_keys_are_read_as_a_set_of_key_ids() -> None:
    env = {"MASTER_API_KEY": "x" * 20, "FLAREPORT_REVOKED_AGENT_KEYS": "key_0123456789abcdef,  KEY_fedcba9876543210"}
    assert load_api(env).revoked_agent_keys == {"key_0123456789abcdef", "key_fedcba9876543210"}
    assert load_api({"MASTER_API_KEY": "x" * 20}).revoked_agent_keys == frozenset()


def test_image_references_with_tag_or_digest_are_valid() -> None:
    for image in ("cloudflare/cloudflared:2025.9.0", "registry:5000/team/cf@sha256:" + "a" * 64, "local/cf:v1"):
        assert load_agent({**AGENT_ENV, "CLOUDFLARED_IMAGE": image}).cloudflared_image == image


def test_load_or_exit_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        load_or_exit(load_reconciler, {"AGENT_OFFLINE_SECONDS": "soon"})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "AGENT_OFFLINE_SECONDS: expected an integer, got 'soon'" in err


def test_the_agents_publishing_policy_is_closed_unless_widened() -> None:
    closed = load_reconciler({})
    assert (closed.agent_origin_allow, closed.agent_allow_wildcard, closed.agent_allow_apex) == (
        frozenset(),
        False,
        False,
    )
    env = {"FLAREPORT_AGENT_ORIGIN_ALLOW": "Unix,bastion", "FLAREPORT_AGENT_ALLOW_WILDCARD": "true"}
    opened = load_reconciler(env)
    assert (opened.agent_origin_allow, opened.agent_allow_wildcard) == (frozenset({"unix", "bastion"}), True)


def test_empty_values_count_as_unset() -> None:
    settings = load_reconciler({"GRACE_PERIOD_SECONDS": "", "REDIS_DB_INDEX": " "})
    assert settings.grace_period_seconds == 600 and settings.common.redis_db_index is None
