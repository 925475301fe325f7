"""The aiohttp application factory.

``create_app`` wires the pipeline (:mod:`middleware`), the API routes under ``/client/v4``,
the controls under ``/__emulator`` and, when ``config.state_file`` is set, loading and
debounced saving of the state (owned by ``cleanup_ctx`` so it stops with the app).  Tests run
the app in-process on a real loopback port and point the official SDK at it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from flareport_cfemu import control, routes_access, routes_account, routes_dns, routes_tunnels, routes_zones, tokens
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.contracts import CHECKER, ContractChecker, contract_middleware
from flareport_cfemu.contracts import routes as contract_routes
from flareport_cfemu.middleware import api_middleware
from flareport_cfemu.persistence import Persister, load_state
from flareport_cfemu.runtime import EMULATOR, Emulator
from flareport_cfemu.state import EmulatorState

__all__ = ["EMULATOR", "Emulator", "create_app"]


def create_app(state: EmulatorState | None = None, *, config: EmulatorConfig) -> web.Application:
    """An emulator app; ``state`` defaults to the state file's content, else an empty tenant."""
    if state is None and config.state_file is not None:
        state = load_state(config.state_file)
    emulator = Emulator(state or EmulatorState(), config)
    # tokens' middleware runs inside the API pipeline: after authentication, the rate limit and the faults.
    # Contract checks (contracts.py, off unless FLAREPORT_CFEMU_CONTRACTS says so) see what the handlers see.
    app = web.Application(
        middlewares=[api_middleware, contract_middleware, tokens.token_scope_middleware],
        client_max_size=64 * 1024 * 1024,
    )
    app[CHECKER] = ContractChecker()
    app[EMULATOR] = emulator
    app[tokens.TOKENS] = tokens.TokenRegistry()
    for module_routes in (
        routes_zones.routes,
        routes_dns.routes,
        routes_tunnels.routes,
        routes_access.routes,
        routes_account.routes,
        tokens.routes,
    ):
        app.router.add_routes(module_routes)
    app.router.add_routes(control.routes)
    app.router.add_routes(contract_routes)
    if config.state_file is not None:
        app.cleanup_ctx.append(
            _persistence(Persister(emulator.state, config.state_file, config.persist_interval_seconds))
        )
    return app


def _persistence(persister: Persister) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(persister.run(), name="cfemu-persist")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await persister.flush()

    return ctx
