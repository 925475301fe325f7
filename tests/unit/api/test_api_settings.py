"""The API's settings: the long-poll and auth-brake knobs are read from the environment and checked."""

from __future__ import annotations

import pytest

from flareport_common.errors import SettingsError
from flareport_common.settings import load_api

BASE = {"MASTER_API_KEY": "0123456789abcdef0123"}


def test_defaults_keep_a_lost_notification_cheap_and_redeliver_after_a_minute() -> None:
    settings = load_api(BASE)
    assert (settings.command_poll_seconds, settings.command_redeliver_seconds, settings.max_wait_seconds) == (
        10.0,
        60.0,
        60.0,
    )
    assert (settings.auth_failure_limit, settings.auth_failure_window_seconds) == (20, 60.0)


def test_knobs_come_from_the_environment() -> None:
    settings = load_api(
        {**BASE, "FLAREPORT_API_COMMAND_POLL_SECONDS": "0.5", "FLAREPORT_API_AUTH_FAILURE_LIMIT": "5",
         "FLAREPORT_API_MAX_WAIT_SECONDS": "30", "FLAREPORT_API_COMMAND_REDELIVER_SECONDS": "10"}
    )  # fmt: skip
    assert (settings.command_poll_seconds, settings.auth_failure_limit, settings.max_wait_seconds) == (0.5, 5, 30.0)
    assert settings.command_redeliver_seconds == 10.0


@pytest.mark.parametrize(
    ("name", "value"),
    [("FLAREPORT_API_COMMAND_POLL_SECONDS", "0"), ("FLAREPORT_API_AUTH_FAILURE_LIMIT", "many"),
     ("FLAREPORT_API_COMMAND_REDELIVER_SECONDS", "0.1")],
)  # fmt: skip
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_api({**BASE, name: value})
