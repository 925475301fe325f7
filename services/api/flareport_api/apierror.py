"""The API's refusal as a value: ``ApiError`` (HTTP status, machine-readable code, message, field) and its helpers.

A plain exception, with no web framework behind it, so the pure input checks (``validation``, ``agent_input``)
can raise it and still import neither aiohttp nor Redis (an import-linter contract keeps it so). ``errors`` turns
it into the one JSON error shape every 4xx/5xx answer has.
"""

from __future__ import annotations


class ApiError(Exception):
    """An answer other than success; ``status`` is the HTTP status, ``code`` the machine-readable reason."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_body", message, field=field)


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"unknown {what} {ident!r}")
