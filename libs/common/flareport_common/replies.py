"""Redis replies as text, whichever way the client was set up.

Every service's client speaks bytes in and out (``flareport_common.redisconn``: msgspec decodes stream payloads
from bytes), so a key name, a hash field or a counter comes back as ``bytes``; a client made with
``decode_responses=True`` (tests, tools) gives ``str``, and a script's numbers come back as ``int``. These two
helpers are the one place that decides how such a reply becomes text, so the services do not each keep a copy.
"""

from __future__ import annotations


def text(value: object) -> str:
    """A reply as text: bytes decoded as UTF-8 (a reply that is not UTF-8 raises), anything else through ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def optional_text(value: bytes | str | None) -> str | None:
    """Like ``text``, keeping None (a missing key or hash field) as None."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
