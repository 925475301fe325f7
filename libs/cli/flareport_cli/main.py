"""The ``flareport`` command: one entry point for every service and for the admin commands.

Each subcommand names the module (and optionally ``:function``) that implements it and is imported only when
chosen, so ``flareport agent`` never loads the API's dependencies and a service's import error never breaks the
others' commands. The admin commands (``keys``, ``agents``, ...) talk to the API over HTTP; see docs/cli.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

# subcommand -> (module with a ``main(argv) -> int`` function, or "module:function", help line)
SERVICES: dict[str, tuple[str, str]] = {
    "api": ("flareport_api.main", "HTTP API for admins and agents (never calls Cloudflare)"),
    "reconciler": ("flareport_reconciler.main", "turn events and intents into desired state, jobs and commands"),
    "dns-worker": ("flareport_dns_worker.main", "the only Cloudflare client: DNS, tunnels, Access"),
    "agent": ("flareport_agent.main", "watch this host's containers and run its cloudflared"),
    "socket-guard": ("flareport_agent.sockguard_server", "a Docker API proxy that allows only what the agent needs"),
    "dev": ("flareport_cli.dev", "run the whole stack locally (redis, emulator, services, agent)"),
}
ADMIN: dict[str, tuple[str, str]] = {
    "keys": ("flareport_cli.admin.keys", "agent keys: create, ls, show, revoke, roll"),
    "agents": ("flareport_cli.admin.agents", "agents: ls, show, enroll, rename, decommission, rm"),
    "rules": ("flareport_cli.admin.rules", "published rules: ls, show, adopt, delete --force, override, revert"),
    "hostnames": ("flareport_cli.admin.hostnames", "settle a contested hostname: assign, unassign"),
    "tunnels": ("flareport_cli.admin.tunnels", "the account's tunnels: ls, show, refresh, restart, redeploy"),
    "manual-rules": ("flareport_cli.admin.manual_rules", "rules without a container: ls, show, create, update, rm"),
    "access-groups": ("flareport_cli.admin.access_groups", "Access groups: ls, show, create, update, rm"),
    "status": ("flareport_cli.admin.ops:status_main", "streams, consumer groups, lag and counts"),
    "reconcile": ("flareport_cli.admin.ops:reconcile_main", "ask the reconciler to recompute and re-apply"),
    "dlq": ("flareport_cli.admin.ops:dlq_main", "dead letters: ls, replay"),
    "audit": ("flareport_cli.admin.audit", "recent admin actions: who asked for what, and when"),
    "import": ("flareport_cli.admin.importer", "import dockflare PATH: DockFlare's groups and manual rules"),
    "backup": ("flareport_cli.admin.backups:backup_main", "write the admin's state as JSON (no secrets)"),
    "restore": ("flareport_cli.admin.backups:restore_main", "restore a backup: a dry run unless --apply"),
    "settings": ("flareport_cli.admin.settings", "the API's effective configuration, secrets masked"),
}
# One-shot checks run where the services run (they read the services' environment, not the API).
CHECKS: dict[str, tuple[str, str]] = {
    "doctor": ("flareport_dns_worker.doctor", "check the Cloudflare token and account: one read per permission"),
}
COMMANDS: dict[str, tuple[str, str]] = {**SERVICES, **ADMIN, **CHECKS}
# The long-running services: once one has shut down in order, its process leaves without tearing down the
# interpreter (``exit_now``).
FAST_EXIT = frozenset({"api", "reconciler", "dns-worker", "agent", "socket-guard"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flareport",
        description="Keep Cloudflare Tunnel ingress, DNS and Access in sync with Docker labels across many hosts.",
        epilog="Admin commands talk to the API at $FLAREPORT_URL (default http://127.0.0.1:8080) with "
        "$MASTER_API_KEY; `flareport COMMAND --help` for details. Exit codes: 0 ok, 1 API error, 2 usage, "
        "3 cannot reach the API, 4 authentication refused, 5 not found.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_line) in COMMANDS.items():
        command = sub.add_parser(name, help=help_line, add_help=False)
        command.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def resolve(command: str) -> Callable[[Sequence[str]], int] | None:
    target, _ = COMMANDS[command]
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    entry: Callable[[Sequence[str]], int] = getattr(module, function or "main")
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
    code = entry(rest)
    if argv is None and command in FAST_EXIT:  # a process of its own, not a caller that goes on (tests)
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """Leave a service's process once the service has stopped in order (its work acknowledged, its connections
    closed): the interpreter's teardown, freeing every module, model and cache object by object, cost 0.1-0.2
    CPU-s per process, paid again at every restart and rolling update, for memory the kernel frees anyway.
    Only the buffered output is left to write."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more can be written
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
