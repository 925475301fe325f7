"""The whole retry vocabulary of Flareport's handlers.

A handler either returns (the message is acknowledged), raises ``TemporaryError`` (try again later, the
message stays pending), or raises ``PermanentError`` (retrying cannot help: the message goes to the
dead-letter stream with the reason). Any other exception is a bug; the stream runtime treats it like a
temporary error so a transient fault in a dependency does not lose the message, and the delivery cap
keeps a poisonous message from being retried forever.
"""

from __future__ import annotations


class FlareportError(Exception):
    """Base class of the errors Flareport raises on purpose."""


class TemporaryError(FlareportError):
    """Retrying later may succeed (a dependency is down, a rate limit, a lease held by another replica)."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(FlareportError):
    """Retrying cannot succeed (invalid input, a refused request); the message is dead-lettered."""


class SettingsError(FlareportError):
    """A setting from the environment is missing or invalid; the message names the variable."""
