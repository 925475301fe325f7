"""``flareport dns-worker``: settings -> logging (secrets redacted) -> health server and the consumers of the two
jobs streams (``service.serve``) until SIGTERM/SIGINT -> stop reading, let running jobs finish, close every client.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flareport_common.logs import setup_logging
from flareport_common.runtime import run
from flareport_common.settings import load_dns_worker, load_or_exit, secret_values
from flareport_dns_worker.service import serve


def main(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="flareport dns-worker",
        description="Apply Cloudflare jobs: DNS records, tunnels and their ingress, Access applications (the only "
        "Cloudflare client). Configured by environment variables (see docs/configuration.md and docs/dns-worker.md).",
    ).parse_args(list(argv))
    settings = load_or_exit(load_dns_worker)
    setup_logging(
        settings.common.log_level, settings.common.log_format, service="dns-worker", secrets=secret_values(settings)
    )
    return run(serve(settings), settings.common.event_loop)
