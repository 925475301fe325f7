"""The emulator runtime: one object that owns state, config, rate limiter, faults and log.

Handlers reach it through ``request.app[EMULATOR]``; tests that run the app in-process can use
the same object to seed, inspect and break the emulator without going through HTTP - every
``/__emulator`` endpoint is a thin wrapper around one method here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from flareport_cfemu import tunnels_store
from flareport_cfemu.config import TUNABLE_FIELDS, EmulatorConfig
from flareport_cfemu.faults import FaultInjector, FaultRule
from flareport_cfemu.ratelimit import AddressLimiter, RateLimiter
from flareport_cfemu.requestlog import RequestLog
from flareport_cfemu.seed import apply_seed
from flareport_cfemu.state import EmulatorState

Json = dict[str, Any]


class Emulator:
    def __init__(self, state: EmulatorState, config: EmulatorConfig) -> None:
        self.state = state
        self.config = config
        self.limiter = RateLimiter()
        self.address_limiter = AddressLimiter()
        self.faults = FaultInjector(config.fault_seed)
        self.log = RequestLog(config.request_log_size)

    # --- state --------------------------------------------------------------------------------

    def seed(self, data: Json, *, replace: bool = False) -> Json:
        """Add the objects in ``data`` (see :mod:`flareport_cfemu.seed`); ``replace`` empties first."""
        if replace:
            self.state.reset()
        return apply_seed(self.state, self.config, data)

    def connect_tunnel(self, tunnel_id: str, *, client_id: str | None = None, connections: int = 4) -> Json:
        """A connector starts on ``tunnel_id``: ``{"client_id"}``."""
        tunnel = self._tunnel(tunnel_id)
        return tunnels_store.connect(
            self.state, tunnel["account_tag"], tunnel_id, client_id=client_id, connections=connections
        )

    def disconnect_tunnel(self, tunnel_id: str, *, client_id: str | None = None) -> Json:
        """Connectors stop; their connections linger for ``config.connection_linger_seconds``: ``{"stopped"}``."""
        tunnel = self._tunnel(tunnel_id)
        return tunnels_store.disconnect(self.state, tunnel["account_tag"], tunnel_id, client_id=client_id)

    def _tunnel(self, tunnel_id: str) -> Json:
        tunnel = self.state.tunnels.get(tunnel_id)
        if tunnel is None:
            raise ValueError(f"no tunnel {tunnel_id}")
        return tunnel

    def dump(self) -> Json:
        return self.state.dump()

    def reset(self) -> None:
        """Empty the state, the request log, the faults and the rate-limit windows (config stays)."""
        self.state.reset()
        self.log.clear()
        self.faults.clear()
        self.limiter.reset()
        self.address_limiter.reset()

    # --- behaviour ----------------------------------------------------------------------------

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change tunable limits (rate_limit, rate_window_seconds, batch_limit, comment_limit, ...)."""
        unknown = set(changes) - TUNABLE_FIELDS
        if unknown:
            raise ValueError(f"not tunable at runtime: {', '.join(sorted(unknown))}")
        self.config = dataclasses.replace(self.config, **changes)
        if {"rate_limit", "rate_window_seconds"} & set(changes):
            self.limiter.reset()
        if "address_rate_limit" in changes:
            self.address_limiter.reset()
        return self.config

    def set_faults(self, rules: list[FaultRule | Json]) -> list[FaultRule]:
        parsed = [r if isinstance(r, FaultRule) else FaultRule.from_json(r) for r in rules]
        self.faults.set_rules(parsed)
        return parsed

    def add_fault(self, rule: FaultRule | Json) -> FaultRule:
        parsed = rule if isinstance(rule, FaultRule) else FaultRule.from_json(rule)
        self.faults.add(parsed)
        return parsed

    def clear_faults(self) -> None:
        self.faults.clear()

    # --- observation --------------------------------------------------------------------------

    def count(self, endpoint: str) -> int:
        """API calls seen for ``"METHOD /template"``, e.g. ``"PUT /accounts/{account_id}/cfd_tunnel/..."``."""
        return self.log.count(endpoint)

    def requests(self, *, limit: int | None = None) -> Json:
        return self.log.snapshot(limit=limit)

    def clear_requests(self) -> None:
        self.log.clear()


EMULATOR = web.AppKey("flareport_cfemu.emulator", Emulator)
