"""The agent's settings for reaching a master behind Cloudflare Access and for its cloudflared, read from the
environment (kept apart from ``settings`` so the agent's newer options do not grow that module).

Names follow DockFlare where it has one: ``CF_ACCESS_CLIENT_ID`` / ``CF_ACCESS_CLIENT_SECRET`` are the variables
DockFlare's agent compose file sets, ``CLOUDFLARED_NETWORK_NAME`` and ``CLOUDFLARED_METRICS_PORT`` its master's, and
``USE_EXTERNAL_CLOUDFLARED`` its switch for a cloudflared run by the operator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flareport_common.env import Env
from flareport_common.errors import SettingsError

ACCESS_ID = "CF_ACCESS_CLIENT_ID"
ACCESS_SECRET = "CF_ACCESS_CLIENT_SECRET"  # noqa: S105 - a variable's name, not a secret
EXTERNAL = ("FLAREPORT_EXTERNAL_CLOUDFLARED", "USE_EXTERNAL_CLOUDFLARED")
EVENT_STREAMS = "AGENT_EVENT_STREAMS"
# Docker's own rule for network names; anything else the engine refuses only when cloudflared is first started.
_NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
# Service token parts go into HTTP headers: printable ASCII without spaces keeps a pasted newline from splitting one.
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,512}")


def agent_options(env: Env, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AgentSettings`` fields of this module, by name."""
    client_id = env.optional(ACCESS_ID)
    secret = env.optional(ACCESS_SECRET)
    if (client_id is None) != (secret is None):
        missing, present = (ACCESS_SECRET, ACCESS_ID) if secret is None else (ACCESS_ID, ACCESS_SECRET)
        raise SettingsError(
            f"{missing}: required when {present} is set (a Cloudflare Access service token is an id and a secret; "
            "set both, or neither)"
        )
    for name, value in ((ACCESS_ID, client_id), (ACCESS_SECRET, secret)):
        if value is not None and not _HEADER_VALUE.fullmatch(value):
            raise SettingsError(f"{name}: expected 1-512 printable characters without spaces")
    network = env.text("CLOUDFLARED_NETWORK_NAME", default=defaults["cloudflared_network"])
    if not _NETWORK_NAME.fullmatch(network):
        raise SettingsError(
            f"CLOUDFLARED_NETWORK_NAME: expected a Docker network name (letters, digits, '_', '.', '-', starting "
            f"with a letter or digit), got {network!r}"
        )
    metrics_port = env.optional_int("CLOUDFLARED_METRICS_PORT", minimum=1, maximum=65535)
    external = env.flag(*EXTERNAL, default=defaults["external_cloudflared"])
    if external and metrics_port is not None:
        raise SettingsError(
            "CLOUDFLARED_METRICS_PORT: has no effect with FLAREPORT_EXTERNAL_CLOUDFLARED=true (the agent runs no "
            "cloudflared); set the metrics port where cloudflared runs"
        )
    return {
        "access_client_id": client_id,
        "access_client_secret": secret or "",
        "cloudflared_network": network,
        "cloudflared_metrics_port": metrics_port,
        "external_cloudflared": external,
        "event_streams": env.choice(EVENT_STREAMS, default=defaults["event_streams"], choices=("auto", "1", "2")),
    }
