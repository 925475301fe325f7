"""What every admin command shares: connection options, the parse -> request -> render flow, error reporting.

Each command group (``keys``, ``agents``, ...) is a module with ``build_parser()`` and ``main(argv) -> int``;
``flareport <group>`` imports it lazily like the service commands. Every action takes the same connection
options (``--url``/``FLAREPORT_URL``, ``--key``/``MASTER_API_KEY``, ``--json``, ``--timeout``), placed after
the action (``flareport keys ls --json``) so that an action's ``--help`` lists them. Handlers return an exit
code and raise ``CliError`` for anything else; ``run`` prints it once, as ``flareport: error: ...`` on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flareport_cli.admin.client import DEFAULT_URL, EXIT_OK, EXIT_USAGE, ApiClient, CliError, Response, check_url

Handler = Callable[["Context", argparse.Namespace], int]


@dataclass
class Context:
    client: ApiClient
    as_json: bool

    def emit(self, response: Response, human: Callable[[Any], None]) -> int:
        """``--json``: the API's body exactly as sent; otherwise ``human`` renders the decoded body."""
        if self.as_json:
            sys.stdout.write(response.body.decode() + "\n")
        else:
            human(response.json())
        return EXIT_OK


def connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument("--url", help=f"API base URL (default: $FLAREPORT_URL or {DEFAULT_URL})")
    group.add_argument("--key", help="admin key (default: $MASTER_API_KEY; prefer the variable: flags show in ps)")
    group.add_argument("--json", action="store_true", help="print the API's JSON unchanged (for scripts)")
    group.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the API (default: 30)")
    return options


def group_parser(name: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(prog=f"flareport {name}", description=description)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    return parser, actions


def action(actions: Any, name: str, help_line: str, handler: Handler, aliases: Sequence[str] = ()) -> Any:
    sub = actions.add_parser(
        name, help=help_line, description=help_line, parents=[connection_options()], aliases=list(aliases)
    )
    sub.set_defaults(handler=handler)
    return sub


def single_parser(name: str, description: str, handler: Handler) -> argparse.ArgumentParser:
    """A command without actions (``flareport status``)."""
    parser = argparse.ArgumentParser(prog=f"flareport {name}", description=description, parents=[connection_options()])
    parser.set_defaults(handler=handler)
    return parser


def make_context(args: argparse.Namespace, environ: Mapping[str, str]) -> Context:
    url = check_url(args.url or environ.get("FLAREPORT_URL") or DEFAULT_URL)
    key = args.key or environ.get("MASTER_API_KEY")
    if not key:
        raise CliError("no admin key: set MASTER_API_KEY or pass --key", EXIT_USAGE)
    return Context(client=ApiClient(url, key, timeout=args.timeout), as_json=args.json)


def run(parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed by argparse)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    try:
        context = make_context(args, os.environ if environ is None else environ)
        code: int = args.handler(context, args)
        return code
    except CliError as exc:
        if as_json and exc.body:
            sys.stderr.write(exc.body.decode("utf-8", "replace") + "\n")
        print(f"flareport: error: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def usage_error(message: str) -> CliError:
    return CliError(message, EXIT_USAGE)
