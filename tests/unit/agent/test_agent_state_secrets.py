"""The agent's run-time secrets (a tunnel token, a rolled key) are redacted from its logs once it holds them."""

from __future__ import annotations

from pathlib import Path

import structlog
from structlog.testing import capture_logs

from flareport_agent.state import AgentState, StateStore
from flareport_common.logs import REDACTED, redact


def test_a_saved_or_loaded_tunnel_token_is_never_logged(tmp_path: Path) -> None:
    token = "eyJhIjoidHVubmVsLXRva2VuLWZvci10ZXN0In0"
    StateStore(tmp_path).save(AgentState(tunnel_token=token, rotated_key="fpk_rolled-key-for-test"))
    with capture_logs(processors=[redact]) as logs:
        structlog.get_logger("t").warning("cloudflared failed", detail=f"TUNNEL_TOKEN={token} rejected")
    assert logs[0]["detail"] == f"TUNNEL_TOKEN={REDACTED} rejected"
    assert StateStore(tmp_path).load().tunnel_token == token
