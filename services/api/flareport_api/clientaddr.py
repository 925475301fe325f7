"""Who is at the other end of a request: the peer, or the client a trusted reverse proxy names.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are written by whoever sends the request, so they are believed only
when the peer is one of the configured proxies (``FLAREPORT_TRUSTED_PROXIES``; none by default). Otherwise any
client could pick a fresh address per request and escape every brake, or pose as another client to brake it.

The forwarded chain is read from the right, the end our own proxy appended: each hop that is itself a trusted
proxy hands over to the one before it, and the first hop that is not is the client. A hop that is not an IP
address ends the walk at the proxy that wrote it (a proxy we trust does not write garbage, so the garbage came
from the client side of it). ``TrustedProxies`` is pure (no I/O), so it is unit-tested on plain values; the two
request helpers at the end are its aiohttp edge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_HOPS = 32  # a longer chain is not a real deployment; the rest is ignored rather than parsed


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address for a request from ``peer`` that carried ``forwarded_for``."""
        current = peer or "unknown"
        if not forwarded_for or not self.trusts(current):
            return current
        hops = [hop.strip() for hop in forwarded_for.split(",")][-_MAX_HOPS:]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return current
            current = hop
            if not self.trusts(hop):
                return hop
        return current

    def https(self, peer: str | None, secure: bool, forwarded_proto: str | None) -> bool:
        """Whether the client reached us over https: our own TLS, or a trusted proxy saying so."""
        if secure:
            return True
        if not forwarded_proto or not self.trusts(peer or ""):
            return False
        # A chain of proxies lists one protocol per hop; the first is what the client used.
        return forwarded_proto.split(",")[0].strip().lower() == "https"


NONE = TrustedProxies(())
TRUSTED_PROXIES = web.AppKey("trusted_proxies", TrustedProxies)


def client_address(request: web.Request) -> str:
    trusted = request.app.get(TRUSTED_PROXIES, NONE)
    return trusted.client(request.remote, request.headers.get("X-Forwarded-For"))


def is_https(request: web.Request) -> bool:
    trusted = request.app.get(TRUSTED_PROXIES, NONE)
    return trusted.https(request.remote, request.secure, request.headers.get("X-Forwarded-Proto"))


def master_url(request: web.Request) -> str:
    """The URL the admin reached the API at: the one agents should use too (behind a TLS proxy: https)."""
    return f"{'https' if is_https(request) else 'http'}://{request.host}"
