"""The four service entry points share one shape: arguments, then settings, then logging, then the service.

Each takes no argument but ``--help``, so a stray argument stops it with the usage (exit 2) before any setting
is read, and ``--help`` points the operator at the configuration reference.
"""

from __future__ import annotations

import importlib

import pytest

from flareport_agent import sockguard_server

MAINS = ["flareport_api.main", "flareport_reconciler.main", "flareport_dns_worker.main", "flareport_agent.main"]


@pytest.mark.parametrize("module", MAINS)
def test_help_points_at_the_configuration_reference(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: flareport "), out
    assert "docs/configuration.md" in " ".join(out.split()), f"{module} --help does not name the reference: {out}"


@pytest.mark.parametrize("module", MAINS)
def test_a_stray_argument_stops_with_the_usage_before_settings_are_read(
    module: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "not-a-level")  # would stop it with another message if settings were read
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(module).main(["--bogus"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err and "invalid configuration" not in err, err


def test_the_socket_guard_stops_on_a_bad_log_level_with_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as stopped:
        sockguard_server.main(["--listen", "tcp:127.0.0.1:0"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "flareport: invalid configuration: LOG_LEVEL: expected one of debug, info, warning, error, critical, got 'loud'"
    )
