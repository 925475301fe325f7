"""The API's effective configuration with its secrets masked (``GET /api/v1/settings``, ``flareport settings``,
the web UI's settings page), from the settings this process runs with (``flareport_common.settingsview``).

Only the API's own: the reconciler, the dns-worker and the agents read their environment in their own processes,
which the API never sees; ``OTHERS`` says so, and where to look instead.
"""

from __future__ import annotations

import msgspec

from flareport_common.settings import ApiSettings
from flareport_common.settingsview import rows

OTHERS = (
    "The reconciler, the dns-worker and each agent read their own environment in their own processes, which the API "
    "never sees: their variables and defaults are in docs/configuration.md, and `flareport doctor`, run with the "
    "dns-worker's environment, checks its Cloudflare token and account."
)


class SettingValue(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # the field, dotted for nested settings (common.redis_url)
    value: str  # as shown: secrets are "set (hidden)" or "not set", a URL's password is ***


class EffectiveSettings(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    settings: tuple[SettingValue, ...]
    others: str


def effective(settings: ApiSettings) -> EffectiveSettings:
    return EffectiveSettings(
        service="api",
        settings=tuple(SettingValue(name=name, value=value) for name, value in rows(settings)),
        others=OTHERS,
    )
