"""The ``flareport`` command: one entry point for every service and, later, the admin commands.

Each subcommand names the module that implements it and is imported only when chosen, so ``flareport agent``
never loads the API's dependencies and a service's import error never breaks the others' commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# subcommand -> (module with a ``main(argv) -> int`` function, help line)
COMMANDS: dict[str, tuple[str, str]] = {
    "api": ("flareport_api.main", "HTTP API for admins and agents (never calls Cloudflare)"),
    "reconciler": ("flareport_reconciler.main", "turn events and intents into desired state, jobs and commands"),
    "dns-worker": ("flareport_dns_worker.main", "the only Cloudflare client: DNS, tunnels, Access"),
    "agent": ("flareport_agent.main", "watch this host's containers and run its cloudflared"),
    "dev": ("flareport_cli.dev", "run the whole stack locally (redis, emulator, services, agent)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flareport",
        description="Keep Cloudflare Tunnel ingress, DNS and Access in sync with Docker labels across many hosts.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_line) in COMMANDS.items():
        command = sub.add_parser(name, help=help_line, add_help=False)
        command.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def resolve(command: str) -> Callable[[Sequence[str]], int] | None:
    module_name, _ = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    entry: Callable[[Sequence[str]], int] = module.main
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # A known subcommand gets every later argument untouched (argparse's REMAINDER drops leading options).
    if arguments and arguments[0] in COMMANDS:
        command, rest = arguments[0], arguments[1:]
    else:
        parsed = build_parser().parse_args(arguments)
        command, rest = parsed.command, parsed.args
    entry = resolve(command)
    if entry is None:
        print(f"flareport {command}: not built yet", file=sys.stderr)
        return 2
    return entry(rest)


if __name__ == "__main__":
    raise SystemExit(main())
