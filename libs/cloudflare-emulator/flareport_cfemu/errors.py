"""Cloudflare error codes and the exception that carries them to the envelope.

Every failure the emulator reports is an :class:`ApiError` with an HTTP status, a Cloudflare
error code and a message.  The codes live here, in one place, so that the documentation
(docs/cloudflare-emulator.md) can list each one and so that a reader can see which codes were
taken from Cloudflare's own responses and which are the emulator's best guess.
"""

from __future__ import annotations

# Verified against responses quoted from api.cloudflare.com (docs, SDK issues, bug reports).
AUTH_ERROR = 10000  # "Authentication error"
RATE_LIMITED = 971  # "Please wait and consider throttling your request speed"
NO_ROUTE = 7000  # "No route for that URI"
BAD_IDENTIFIER = 7003  # "Could not route to ..., perhaps your object identifier is invalid?"
DNS_VALIDATION = 1004  # "DNS Validation Error" (generic DNS body error)
DNS_NAME_INVALID = 9000  # "DNS name is invalid."
DNS_A_CONTENT = 9005  # "Content for A record must be a valid IPv4 address."
DNS_AAAA_CONTENT = 9006  # "Content for AAAA record must be a valid IPv6 address."
DNS_CNAME_CONTENT = 9007  # "Content for CNAME record is invalid."
DNS_TTL_INVALID = 9021  # invalid TTL
DNS_NOT_PROXIABLE = 9041  # "Invalid proxied mode. Record cannot be proxied"
DNS_COMMENT_TOO_LONG = 9313  # "DNS record comment exceeds the maximum length of 100 characters."
DNS_RECORD_NOT_FOUND = 81044  # "Record does not exist."
DNS_CNAME_CONFLICT = 81053  # "An A, AAAA, or CNAME record with that host already exists."
DNS_A_ON_CNAME = 81054  # "A CNAME record with that host already exists."
DNS_IDENTICAL = 81058  # "An identical record already exists."
TUNNEL_NAME_TAKEN = 1013  # "You already have a tunnel with this name. ..."
TUNNEL_HAS_CONNECTIONS = 1022  # delete of a tunnel with (active or lingering) connections; code seen in clients
DNS_RECORD_EXISTS = 81057  # "The record already exists."
ACCESS_ERROR = 12130  # "access.api.error.not_found" and other Access errors
ACCESS_APP_EXISTS = 11010  # 409 "access.api.error.application_already_exists" (another app has the domain)

# Emulator choices: Cloudflare's exact code for these cases is not documented publicly.
METHOD_NOT_ALLOWED = 7001  # known route, wrong HTTP method
INVALID_REQUEST = 1001  # malformed JSON body, missing/invalid fields outside DNS
DNS_TYPE_INVALID = 9020  # unsupported record type
DNS_TAGS_INVALID = 9300  # malformed or too many record tags
DNS_BATCH_TOO_LARGE = 81070  # batch larger than the zone plan allows
DNS_RECORD_QUOTA = 81045  # "Record quota exceeded." (a create beyond the zone's record quota)
TUNNEL_CONFIG_INVALID = 1055  # ingress rules rejected the way cloudflared would
INJECTED_SERVER_ERROR = 10001  # body of an injected 5xx fault


PAGE_SIZE_INVALID = 1001  # per_page outside an endpoint's documented bounds (the code is our guess)


class ApiError(Exception):
    """A Cloudflare API failure: rendered as ``{"success": false, "errors": [...]}``. ``chain`` holds the
    ``(code, message)`` pairs Cloudflare nests in ``error_chain`` under a generic code (e.g. 9000 under 1004).
    """

    def __init__(self, status: int, code: int, message: str, *, chain: tuple[tuple[int, str], ...] = ()) -> None:
        super().__init__(f"{status} [{code}] {message}")
        self.status = status
        self.code = code
        self.message = message
        self.chain = chain


def bad_request(code: int, message: str) -> ApiError:
    return ApiError(400, code, message)


def not_found(code: int, message: str) -> ApiError:
    return ApiError(404, code, message)


def bad_identifier(path: str) -> ApiError:
    return ApiError(404, BAD_IDENTIFIER, f"Could not route to {path}, perhaps your object identifier is invalid?")
