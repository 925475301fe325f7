"""The origin policy for agents' rules: what is denied by default, in every spelling cloudflared would connect
to, what stays allowed, and how an admin's allowance opens exactly one kind."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flareport_common.policy import ORIGIN_KINDS
from flareport_reconciler.origins import loose_ipv4, origin_denial, origin_kind

NONE: frozenset[str] = frozenset()

DENIED = {
    # cloud metadata, by address and by name, in every scheme cloudflared proxies
    "http://169.254.169.254": "metadata",
    "https://169.254.169.254:443": "metadata",
    "ws://169.254.169.254/": "metadata",
    "wss://169.254.169.254": "metadata",
    "tcp://169.254.169.254:80": "metadata",
    "ssh://169.254.169.254:22": "metadata",
    "rdp://169.254.169.254:3389": "metadata",
    "http://169.254.170.2": "metadata",
    "http://100.100.100.200": "metadata",
    "http://168.63.129.16": "metadata",
    "http://[fd00:ec2::254]": "metadata",
    "http://[fd00:ec2::254]:80": "metadata",
    "http://metadata.google.internal": "metadata",
    "http://METADATA.Google.Internal.": "metadata",
    "http://metadata": "metadata",
    "http://metadata:80": "metadata",
    "http://instance-data.ec2.internal": "metadata",
    # loose IPv4 forms a C resolver accepts
    "http://2852039166": "metadata",
    "http://0xa9fea9fe": "metadata",
    "http://0xA9.0xFE.0xA9.0xFE": "metadata",
    "http://0251.0376.0251.0376": "metadata",
    "http://169.254.43518": "metadata",
    "http://169.16689662": "metadata",
    "http://169.254.169.254.": "metadata",
    "http://%31%36%39.254.169.254": "metadata",
    # IPv6 forms carrying the IPv4 address
    "http://[::ffff:169.254.169.254]": "metadata",
    "http://[::ffff:a9fe:a9fe]": "metadata",
    "http://[::169.254.169.254]": "metadata",
    "http://[64:ff9b::169.254.169.254]": "metadata",
    "http://[2002:a9fe:a9fe::1]": "metadata",
    # wildcard DNS services spelling the address
    "http://169.254.169.254.nip.io": "metadata",
    "http://app.169-254-169-254.sslip.io": "metadata",
    # link-local
    "http://169.254.1.1": "link-local",
    "tcp://169.254.0.1:5432": "link-local",
    "http://[fe80::1]": "link-local",
    "http://[fe80::1%25eth0]:8080": "link-local",
    "http://[febf::1]": "link-local",
    "http://[::ffff:169.254.3.4]": "link-local",
    # sockets and proxies
    "unix:/var/run/docker.sock": "unix",
    "unix+tls:/run/app.sock": "unix",
    "UNIX:/var/run/docker.sock": "unix",
    " unix:/var/run/docker.sock": "unix",
    "bastion": "bastion",
    "Bastion": "bastion",
    "socks5": "bastion",
    # no scheme, or a parser-confusing spelling: denied all the same
    "169.254.169.254:80": "metadata",
    "http://user@169.254.169.254": "metadata",
    "http://[fe80::1": "link-local",
    "http://fe80::1": "link-local",
}

ALLOWED = [
    "http://web:80",
    "http://192.168.1.10:5000",
    "http://10.0.0.5",
    "http://127.0.0.1:8080",
    "http://localhost:3000",
    "https://[2001:db8::1]:443",
    "tcp://db:5432",
    "ssh://git.internal:22",
    "http_status:404",
    "hello_world",
    "http://app.example.com",
    "http://metadata-service:8080",
    "http://10-0-0-1.sslip.io",
    "http://[::1]:80",
    "",
]


@pytest.mark.parametrize(("service", "kind"), sorted(DENIED.items()))
def test_denied_by_default(service: str, kind: str) -> None:
    assert origin_kind(service) == kind
    reason = origin_denial(service, NONE, agent_id="a1")
    assert reason is not None
    assert "origin policy" in reason
    assert f"allow '{kind}'" in reason
    assert "flareport agents policy a1" in reason
    assert "FLAREPORT_AGENT_ORIGIN_ALLOW" in reason


def test_embedded_name_with_a_numeric_tld_is_denied_too() -> None:
    # Not a known wildcard-DNS service, but a name spelling a denied address is denied whatever follows it:
    # erring on the side of denial costs no legitimate origin anything.
    assert origin_kind("http://169.254.169.254.example") == "metadata"


@pytest.mark.parametrize("service", ALLOWED)
def test_ordinary_origins_are_allowed(service: str) -> None:
    assert origin_kind(service) is None
    assert origin_denial(service, NONE) is None


@pytest.mark.parametrize(("service", "kind"), sorted(DENIED.items()))
def test_allowing_the_kind_allows_the_origin(service: str, kind: str) -> None:
    assert origin_denial(service, frozenset({kind})) is None
    others = frozenset(ORIGIN_KINDS) - {kind}
    assert origin_denial(service, others) is not None


def test_allowing_link_local_does_not_open_the_metadata_service() -> None:
    assert origin_denial("http://169.254.1.1", frozenset({"link-local"})) is None
    assert origin_denial("http://169.254.169.254", frozenset({"link-local"})) is not None


def test_a_long_service_is_shortened_in_the_reason() -> None:
    service = "unix:/" + "x" * 10_000
    reason = origin_denial(service, NONE)
    assert reason is not None and len(reason) < 600


def test_loose_ipv4_reads_like_inet_aton() -> None:
    assert loose_ipv4("127.1") == ipaddress.IPv4Address("127.0.0.1")
    assert loose_ipv4("0x7f.1") == ipaddress.IPv4Address("127.0.0.1")
    assert loose_ipv4("017700000001") == ipaddress.IPv4Address("127.0.0.1")
    assert loose_ipv4("256.1.1.1") is None
    assert loose_ipv4("1.2.3.4.5") is None
    assert loose_ipv4("08.1.1.1") is None  # not octal, not decimal
    assert loose_ipv4("web") is None


@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from(["{}", "0x{:x}", "0{:o}"]))
def test_every_spelling_of_an_address_has_its_kind(value: int, spelling: str) -> None:
    ip = ipaddress.IPv4Address(value)
    link_local = ip in ipaddress.ip_network("169.254.0.0/16")
    kind = origin_kind(f"http://{spelling.format(value)}")
    other_metadata = {"100.100.100.200", "192.0.0.192", "168.63.129.16"}
    assert (kind is not None) == (link_local or str(ip) in other_metadata)
    assert origin_kind(f"http://[::ffff:{ip}]") == origin_kind(f"http://{ip}")


@given(st.text(max_size=200))
def test_any_text_is_classified_without_error(service: str) -> None:
    kind = origin_kind(service)
    assert kind is None or kind in ORIGIN_KINDS
    reason = origin_denial(service, NONE)
    assert (reason is None) == (kind is None)
