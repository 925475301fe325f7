"""A small synchronous HTTP client for the admin API, and the mapping of its failures to exit codes.

The CLI makes one or two requests per run, so plain ``urllib`` is enough: no event loop, no session, nothing to
close. Every failure becomes a ``CliError`` carrying the line to print and the exit code, so each command is a
straight line of requests and rendering, and the exit codes are decided in exactly one place:

====  ==================================================================================================
code  meaning
====  ==================================================================================================
0     success
1     the API answered with an error (4xx other than below, 5xx, e.g. 409 conflict, 422 invalid, 503)
2     usage error (bad arguments, no admin key configured)
3     cannot reach the API (connection refused, DNS, timeout, not an HTTP answer)
4     authentication refused (401, or 429 after too many failed authentications)
5     not found (404: unknown key, agent, rule, dead letter)
====  ==================================================================================================
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5

DEFAULT_URL = "http://127.0.0.1:8080"


class CliError(Exception):
    """A failure to report on stderr; ``body`` is the API's raw error body, if it sent one (for ``--json``)."""

    def __init__(self, message: str, code: int, body: bytes | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.body = body


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def exit_code_for(status: int) -> int:
    if status in (401, 429):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    return EXIT_API


def describe_error(status: int, body: bytes, headers: dict[str, str] | None = None) -> str:
    """One line from an ``ErrorResponse`` (message, field, code); a non-JSON body (a proxy's page) is quoted."""
    try:
        detail = json.loads(body)["error"]
        message = str(detail["message"])
        code = str(detail.get("code") or "")
        field = detail.get("field")
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")
        return f"HTTP {status}: {text[:200] or 'no body'}"
    line = f"{message} (field: {field})" if field else message
    line += f" [HTTP {status} {code}]" if code else f" [HTTP {status}]"
    retry = (headers or {}).get("Retry-After")
    if status == 429 and retry:
        line += f"; retry after {retry} s"
    if status == 401:
        line += "; check MASTER_API_KEY or --key"
    return line


class ApiClient:
    def __init__(self, url: str, key: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    # Queries map to None for "not given" (left out), so callers can pass every optional filter as it is.
    def get(self, path: str, query: dict[str, str | None] | None = None) -> Response:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Response:
        return self.request("POST", path, body={} if body is None else body)

    def put(self, path: str, body: Any) -> Response:
        return self.request("PUT", path, body=body)

    def delete(self, path: str, query: dict[str, str | None] | None = None) -> Response:
        return self.request("DELETE", path, query=query)

    def request(
        self, method: str, path: str, *, body: Any = None, query: dict[str, str | None] | None = None
    ) -> Response:
        url = self.url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked in parse_url
        request.add_header("Authorization", f"Bearer {self.key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                return Response(status=answer.status, body=answer.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            headers = dict(exc.headers.items()) if exc.headers else {}
            raise CliError(describe_error(exc.code, raw, headers), exit_code_for(exc.code), raw) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise CliError(f"cannot reach the API at {self.url}: {reason}", EXIT_CONNECT) from None
        except (http.client.HTTPException, ValueError) as exc:  # a reply that is not HTTP at all
            raise CliError(f"cannot reach the API at {self.url}: {exc}", EXIT_CONNECT) from None


def quote(segment: str) -> str:
    """A path segment as the API expects it (ids and hostnames never need '/', so it is escaped too)."""
    return urllib.parse.quote(segment, safe="")


def check_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CliError(f"invalid API URL {url!r}: expected http(s)://host[:port]", EXIT_USAGE)
    return url
