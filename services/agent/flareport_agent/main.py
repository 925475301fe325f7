"""``flareport agent``: settings -> logging (secrets redacted) -> the agent, with its health server (/healthz,
/metrics), until SIGTERM/SIGINT or a decommission command -> stop watching and polling, save the state (cloudflared
keeps serving: the engine runs it).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flareport_agent.agent import Agent
from flareport_common.logs import setup_logging
from flareport_common.runtime import install_stop_handlers, run, settle_gc
from flareport_common.settings import AgentSettings, load_agent, load_or_exit, secret_values


async def serve(settings: AgentSettings) -> int:
    agent = Agent(settings)
    install_stop_handlers(agent.stop)
    settle_gc()
    return await agent.run()


def main(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="flareport agent",
        description="Watch this host's containers, report them to the master and run its cloudflared. "
        "Configured by environment variables (see docs/configuration.md and docs/agent.md).",
    ).parse_args(list(argv))
    settings = load_or_exit(load_agent)
    setup_logging(settings.log_level, settings.log_format, service="agent", secrets=secret_values(settings))
    return run(serve(settings), settings.event_loop)
