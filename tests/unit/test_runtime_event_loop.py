"""The services' event loop (``FLAREPORT_EVENT_LOOP``): uvloop by default, asyncio's own on request, and a clear
stop when uvloop is asked for and missing."""

from __future__ import annotations

import asyncio
import sys

import pytest

from flareport_common import runtime, settings
from flareport_common.errors import SettingsError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_by_default_a_service_runs_on_uvloop() -> None:
    assert runtime.run(_loop_module()).startswith("uvloop")
    assert runtime.run(_loop_module(), "uvloop").startswith("uvloop")


def test_asyncio_keeps_the_standard_library_loop() -> None:
    assert runtime.run(_loop_module(), "asyncio").startswith("asyncio")


def test_auto_falls_back_to_asyncio_where_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an import of an absent package raises on
    assert runtime.run(_loop_module(), "auto").startswith("asyncio")


def test_uvloop_asked_for_and_missing_stops_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(SystemExit) as stopped:
        settings.load_or_exit(settings.load_reconciler, {"FLAREPORT_EVENT_LOOP": "uvloop"})
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "flareport: invalid configuration: FLAREPORT_EVENT_LOOP: uvloop is not installed"
    )


_AGENT_ENV = {"FLAREPORT_MASTER_URL": "https://master.example.com", "FLAREPORT_API_KEY": "k" * 32}


def test_the_setting_is_read_by_the_services_and_the_agent() -> None:
    assert settings.load_reconciler({"FLAREPORT_EVENT_LOOP": "asyncio"}).common.event_loop == "asyncio"
    assert settings.load_agent({**_AGENT_ENV, "FLAREPORT_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    assert settings.load_reconciler({}).common.event_loop == "auto"


def test_a_bad_value_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="FLAREPORT_EVENT_LOOP"):
        settings.load_reconciler({"FLAREPORT_EVENT_LOOP": "tokio"})
    with pytest.raises(SettingsError, match="FLAREPORT_EVENT_LOOP"):
        settings.load_agent({**_AGENT_ENV, "FLAREPORT_EVENT_LOOP": "tokio"})
