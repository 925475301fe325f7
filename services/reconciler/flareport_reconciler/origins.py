"""The origin policy for agents' rules: which ingress services an agent's labels may not publish. Pure, no I/O.

A stolen agent key can describe any container it likes, so without a policy it could publish, under a hostname
of its own, the host's cloud metadata service (its instance credentials), the Docker socket (root on the host)
or a bastion (a proxy into the host's whole network). Those kinds are denied for agents' rules unless an admin
allows them, for one agent (its record's ``origin_allow``) or for all (``FLAREPORT_AGENT_ORIGIN_ALLOW``); the
names of the kinds live in ``flareport_common.policy``.

The service is read the way cloudflared (Go) would connect to it, erring on the side of denial: the host is
percent-decoded, IPv4 is also read in the loose forms a C resolver accepts (``2852039166``, ``0xa9fea9fe``,
``0251.0376.0251.0376``), IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are read as
that address, and a name that embeds a denied address the way public wildcard-DNS services spell it
(``169.254.169.254.nip.io``, ``169-254-169-254.sslip.io``) counts as that address. Any other DNS name that
resolves to such an address is beyond what the control plane can see (it resolves nothing); docs/security.md
says so and recommends blocking the metadata address on the hosts as well.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import unquote, urlsplit

from flareport_common.policy import ORIGIN_ALLOW_ENV, ORIGIN_KINDS

# A kind per address/name; the most specific kind decides (a metadata address is link-local too, and allowing
# "link-local" must not open the metadata service).
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, Hetzner, ...
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS pod identity
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud Classic
        "168.63.129.16",  # Azure WireServer (VM extension settings and certificates)
        "fd00:ec2::254",  # AWS, IPv6
        "fd00:ec2::23",  # AWS EKS pod identity, IPv6
    )
)
_METADATA_NAMES = frozenset(
    {
        "metadata",  # with the GCE search domain
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.packet.net",
        "metadata.platformequinix.com",
    }
)
_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.ip_network("::/96")
# Keyword services that proxy to any host the connector reaches (cloudflared's bastion mode and SOCKS proxy).
_BASTIONS = frozenset({"bastion", "socks5"})

_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL = re.compile(r"0[0-7]*")
_DECIMAL = re.compile(r"[1-9][0-9]*")
_DASHED_V4 = re.compile(r"(?<![0-9])([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})-([0-9]{1,3})(?![0-9])")
_DOTTED_V4 = re.compile(r"(?<![0-9])([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9])")
_MAX_SHOWN = 200
_MAY_BE_ADDRESS = re.compile(r"[0-9:]")
_LOOSE_V4_TEXT = re.compile(r"[0-9a-fx.]+")  # every character an IPv4 address can be spelled with
# Characters that make URL parsers disagree: brackets, userinfo, escapes, backslashes, whitespace and controls.
_UNUSUAL = re.compile(r"[\[\]@%\\\s\x00-\x1f\x7f]")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _number(part: str) -> int | None:
    """One part of a loose IPv4 address as inet_aton reads it: 0x hex, leading-0 octal or decimal."""
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCTAL.fullmatch(part):
        return int(part, 8)
    if _DECIMAL.fullmatch(part):
        return int(part)
    return None


def loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read as inet_aton would (1-4 parts, the last filling the remaining bytes), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for index, n in enumerate(head):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return loose_ipv4(host)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, if it carries one (mapped, NAT64, 6to4, compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64) or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _address_kind(ip: Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return _address_kind(inner)
    if ip in _METADATA_IPS:
        return "metadata"
    if ip in _LINK_LOCAL_V4 or ip in _LINK_LOCAL_V6:
        return "link-local"
    return None


def _embedded_in_name(name: str) -> str | None:
    """The kind of an address a wildcard-DNS name spells out (``169.254.169.254.nip.io``), if denied."""
    kinds: list[str] = []
    for pattern in (_DOTTED_V4, _DASHED_V4):
        for match in pattern.finditer(name):
            ip = loose_ipv4(".".join(str(int(g)) for g in match.groups()))
            kind = _address_kind(ip) if ip is not None else None
            if kind is not None:
                kinds.append(kind)
    return _most_specific(kinds)


def _most_specific(kinds: list[str]) -> str | None:
    for kind in ORIGIN_KINDS:
        if kind == "link-local":
            continue
        if kind in kinds:
            return kind
    return "link-local" if "link-local" in kinds else None


def host_kind(host: str) -> str | None:
    """The denied kind of an origin host (a name or an address, bracketed or not), or None."""
    name = unquote(host).strip().lower().strip("[]").rstrip(".")
    name = name.partition("%")[0]  # an IPv6 zone ("fe80::1%eth0") does not change the address
    if name in _METADATA_NAMES:
        return "metadata"
    if not _MAY_BE_ADDRESS.search(name):
        return None  # a plain name (a container's, say): no address in any spelling has neither digit nor ':'
    if ":" in name or _LOOSE_V4_TEXT.fullmatch(name):  # parse only what could be an address: parsing is slow
        ip = _address(name)
        if ip is not None:
            return _address_kind(ip)
    return _embedded_in_name(name)


def _hosts(service: str) -> set[str]:
    """Every host ``service`` may name: the URL parser's reading and a plain split, in case they differ."""
    # What precedes the first colon is a host when there is no scheme ("169.254.169.254:80").
    hosts: set[str] = {service.partition(":")[0]}
    if _UNUSUAL.search(service):  # only then may the URL parser read a host the plain split below does not
        try:
            parsed = urlsplit(service)
            if parsed.hostname:
                hosts.add(parsed.hostname)
        except ValueError:
            pass
    rest = service.partition(":")[2].lstrip("/\\")
    authority = re.split(r"[/?#\\]", rest, maxsplit=1)[0].rpartition("@")[2]
    if authority.startswith("["):
        hosts.add(authority[1:].partition("]")[0])
    elif authority.count(":") == 1:
        hosts.add(authority.partition(":")[0])
    elif authority:
        hosts.add(authority)  # no port, or a bare IPv6 address
    return hosts


@functools.lru_cache(maxsize=8192)
def origin_kind(service: str) -> str | None:
    """The denied kind of an ingress service (``ORIGIN_KINDS``), or None when the policy has nothing to say."""
    text = service.strip().lower()
    if text in _BASTIONS:
        return "bastion"
    scheme, colon, _ = text.partition(":")
    if not colon:
        return host_kind(text) if text else None
    if scheme.startswith("unix"):  # unix:, unix+tls: and whatever cloudflared adds in that family
        return "unix"
    return _most_specific([k for k in (host_kind(h) for h in _hosts(service.strip())) if k is not None])


def origin_denial(service: str, allowed: frozenset[str], *, agent_id: str | None = None) -> str | None:
    """Why an agent's rule may not publish ``service`` (naming the policy and how an admin allows it), or None."""
    kind = origin_kind(service)
    if kind is None or kind in allowed:
        return None
    shown = service if len(service) <= _MAX_SHOWN else service[:_MAX_SHOWN] + "..."
    who = f"agent {agent_id}" if agent_id else "the agent"
    command = f"flareport agents policy {agent_id or '<agent>'} --origin-allow {kind}"
    return (
        f"origin {shown} is {ORIGIN_KINDS[kind]}, denied by the origin policy for agents' rules; an admin can "
        f"allow '{kind}' for {who} ({command}) or for every agent ({ORIGIN_ALLOW_ENV}={kind})"
    )
