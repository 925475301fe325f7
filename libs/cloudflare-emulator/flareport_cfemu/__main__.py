"""``flareport-cfemu`` / ``python -m flareport_cfemu``: run the emulator as a process.

Prints one line, ``flareport-cfemu listening on http://HOST:PORT/client/v4``, once the socket
is bound (``--port 0`` picks a free port; scripts read the URL from that line), then serves
until SIGINT/SIGTERM, writing the state file one last time on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from flareport_cfemu.app import create_app
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.persistence import load_state
from flareport_cfemu.runtime import EMULATOR
from flareport_cfemu.seed import apply_seed
from flareport_cfemu.state import EmulatorState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flareport-cfemu", description="Local Cloudflare API v4 emulator")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port to bind, 0 for any free port (default 8787)")
    parser.add_argument("--seed", type=Path, help="JSON seed document applied at start (if no state file exists)")
    parser.add_argument("--state-file", type=Path, help="persist the state to this JSON file and load it at start")
    parser.add_argument("--rate-limit", type=int, default=1200, help="requests per window per token (default 1200)")
    parser.add_argument("--rate-window", type=float, default=300.0, help="rate-limit window in seconds (default 300)")
    parser.add_argument(
        "--address-rate-limit", type=int, default=200, help="requests per second per address (default 200; 0: none)"
    )
    parser.add_argument("--batch-limit", type=int, help="DNS batch size limit for every zone (default: by plan)")
    parser.add_argument("--comment-limit", type=int, help="DNS comment length limit (default: by plan)")
    parser.add_argument("--token", help="the only bearer token accepted (default: any non-empty token)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    config = EmulatorConfig(
        token=args.token,
        rate_limit=args.rate_limit,
        rate_window_seconds=args.rate_window,
        address_rate_limit=args.address_rate_limit,
        batch_limit=args.batch_limit,
        comment_limit=args.comment_limit,
        state_file=args.state_file,
    )
    state = load_state(args.state_file) if args.state_file else None
    if state is None:
        state = EmulatorState()
        if args.seed:
            apply_seed(state, config, json.loads(args.seed.read_text(encoding="utf-8")))
    app = create_app(state, config=config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"flareport-cfemu listening on http://{args.host}:{port}/client/v4", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        print(f"flareport-cfemu stopped after {app[EMULATOR].log.total} API requests", flush=True)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when installed (FLAREPORT_CFEMU_LOOP=asyncio opts out): the emulator stands in for Cloudflare,
    whose CPU is not the machine's, so it should take as little of the cores it shares with the stack as it can.
    Its own choice, not flareport_common.runtime's: the emulator depends on no Flareport package."""
    if os.environ.get("FLAREPORT_CFEMU_LOOP", "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(args))
    except (OSError, ValueError) as error:
        print(f"flareport-cfemu: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
