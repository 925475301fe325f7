"""Key layout (prefix, Redis Cluster hash tags) and the ``flareport`` command's surface."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flareport_cli.main import COMMANDS, main
from flareport_common.keys import Keys


def hash_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


def test_every_key_uses_the_prefix() -> None:
    keys = Keys("custom:")
    names = [keys.events, keys.intents, keys.cf_jobs, keys.cf_results, keys.dead_letters, keys.agent_commands("a")]
    assert all(name.startswith("custom:") for name in names)
    assert len(set(names)) == len(names)


def test_keys_of_one_agent_share_a_hash_tag() -> None:
    keys = Keys()
    tags = {hash_tag(k) for k in (keys.agent("a1"), keys.agent_commands("a1"), keys.agent_heartbeats("a1"))}
    assert tags == {"agent:a1"}
    assert hash_tag(keys.target_lease("zone:x")) == hash_tag(keys.target_applied("zone:x"))


def test_help_lists_the_service_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flareport_cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("api", "reconciler", "dns-worker", "agent"):
        assert command in result.stdout
    assert set(COMMANDS) >= {"api", "reconciler", "dns-worker", "agent", "dev"}


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_subcommand_options_reach_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dev", "--help"])
    assert exited.value.code == 0
    assert "--data-dir" in capsys.readouterr().out, "options after the subcommand belong to the subcommand"
