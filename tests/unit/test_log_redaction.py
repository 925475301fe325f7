"""Secrets never reach a log line: every secret setting (and a Redis URL's password) is replaced wherever it
appears, inside an exception's text included, and tracebacks carry no local variables."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from flareport_common.logs import REDACTED, add_secret, setup_logging
from flareport_common.settings import load_api, secret_values

MASTER = "master-key-that-must-not-leak-0123"


def test_secret_values_name_every_secret_setting_and_the_redis_password() -> None:
    settings = load_api({"MASTER_API_KEY": MASTER, "REDIS_URL": "redis://app:p%40ss-word-1@redis:6379/0"})
    found = set(secret_values(settings))
    assert {MASTER, "p%40ss-word-1", "p@ss-word-1", settings.agent_key_secret} <= found
    assert MASTER not in repr(settings) and "p%40ss" not in repr(settings)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    config, handlers, level = structlog.get_config(), logging.getLogger().handlers[:], logging.getLogger().level
    yield
    structlog.configure(**config)
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.usefixtures("restore_logging")
def test_a_logged_exception_shows_neither_secrets_nor_locals(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", fmt, secrets=[MASTER])
    add_secret("tunnel-token-learnt-later-xyz")
    log = structlog.get_logger("test")

    def fail(settings_key: str) -> None:
        hidden_local = "a-local-that-is-no-setting-0987"  # noqa: F841 - shown by a traceback with locals
        raise RuntimeError(f"could not use {settings_key}")

    try:
        fail(MASTER)
    except RuntimeError:
        log.exception("boom", url="redis://u:tunnel-token-learnt-later-xyz@h", nested={"k": [MASTER]})
    err = capsys.readouterr().err
    assert "RuntimeError" in err and REDACTED in err
    assert MASTER not in err and "tunnel-token-learnt-later-xyz" not in err
    assert "a-local-that-is-no-setting-0987" not in err, "no local variables in tracebacks"
