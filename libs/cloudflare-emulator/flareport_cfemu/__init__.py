"""A local emulator of the parts of Cloudflare's API v4 that Flareport uses.

Flareport's tests, benchmarks and demo stack need a Cloudflare that answers like the real one
(same paths, query parameters, bodies, envelopes and error codes) but runs offline, can be
seeded, inspected and made to fail on purpose.  The package exposes:

* :func:`create_app` - the aiohttp application (serve it under any host/port; the API lives
  under ``/client/v4`` and the test controls under ``/__emulator``);
* :class:`EmulatorState` - the in-memory model, usable directly from Python;
* :class:`EmulatorConfig` - limits and behaviour switches (rate limit, plan limits, token);
* :class:`Emulator` - the runtime object behind the app (state + request log + faults +
  rate limiter), for tests that want to drive the controls without HTTP;
* :class:`EmulatorControl` - a small typed aiohttp client for the ``/__emulator`` endpoints.
"""

from flareport_cfemu.app import EMULATOR, Emulator, create_app
from flareport_cfemu.client import EmulatorControl
from flareport_cfemu.config import EmulatorConfig
from flareport_cfemu.state import EmulatorState

__all__ = ["EMULATOR", "Emulator", "EmulatorConfig", "EmulatorControl", "EmulatorState", "create_app"]
