"""``flareport dns-worker``: settings -> logging -> the worker until SIGTERM (see ``service``)."""

from __future__ import annotations

from collections.abc import Sequence

from flareport_common.logs import setup_logging
from flareport_common.settings import load_dns_worker, load_or_exit, secret_values
from flareport_dns_worker.service import run


def main(argv: Sequence[str]) -> int:
    settings = load_or_exit(load_dns_worker)
    setup_logging(
        settings.common.log_level, settings.common.log_format, service="dns-worker", secrets=secret_values(settings)
    )
    return run(settings)
