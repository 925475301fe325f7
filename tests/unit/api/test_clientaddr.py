"""Which address a brake counts: the peer, or the client a trusted proxy names, never a header anyone can write."""

from __future__ import annotations

import pytest

from flareport_api.auth import presented_key_id
from flareport_api.clientaddr import TrustedProxies
from flareport_common.errors import SettingsError
from flareport_common.settings import load_api

PROXY = TrustedProxies(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.1.2.3", "198.51.100.7", "198.51.100.7"),  # one trusted proxy
        ("10.1.2.3", "198.51.100.7, 10.4.4.4", "198.51.100.7"),  # two trusted proxies in a row
        ("10.1.2.3", "203.0.113.1, 198.51.100.7", "198.51.100.7"),  # the client's own prefix is not believed
        ("192.0.2.5", "198.51.100.7", "192.0.2.5"),  # the peer is no proxy: the header is ignored
        ("10.1.2.3", "not-an-ip", "10.1.2.3"),  # garbage ends the walk at the proxy that passed it on
        ("10.1.2.3", "10.5.5.5", "10.5.5.5"),  # every hop trusted: the farthest one is the client
        ("::1", "2001:db8::1", "2001:db8::1"),
        ("10.1.2.3", None, "10.1.2.3"),
        (None, "198.51.100.7", "unknown"),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str | None, forwarded: str | None, client: str
) -> None:
    assert PROXY.client(peer, forwarded) == client


def test_no_proxy_is_trusted_by_default() -> None:
    settings = load_api({"MASTER_API_KEY": "k" * 32})
    assert settings.trusted_proxies == ()
    assert TrustedProxies(settings.trusted_proxies).client("127.0.0.1", "198.51.100.7") == "127.0.0.1"


def test_https_is_believed_only_from_a_trusted_proxy() -> None:
    assert PROXY.https("10.1.2.3", False, "https")
    assert PROXY.https("10.1.2.3", False, "https, http"), "the first hop is what the client used"
    assert not PROXY.https("192.0.2.5", False, "https")
    assert PROXY.https("192.0.2.5", True, None), "our own TLS"


def test_trusted_proxies_setting_names_the_bad_entry() -> None:
    settings = load_api({"MASTER_API_KEY": "k" * 32, "FLAREPORT_TRUSTED_PROXIES": "10.0.0.1, 172.16.0.0/12 ::1"})
    assert settings.trusted_proxies == ("10.0.0.1/32", "172.16.0.0/12", "::1/128")
    with pytest.raises(SettingsError, match=r"FLAREPORT_TRUSTED_PROXIES: 'proxy.local' is not"):
        load_api({"MASTER_API_KEY": "k" * 32, "FLAREPORT_TRUSTED_PROXIES": "proxy.local"})


def test_brake_buckets_name_the_presented_key_id_only_when_well_formed() -> None:
    assert presented_key_id("fpk_0123456789abcdef~x.y") == "key_0123456789abcdef"
    assert presented_key_id("fpk_0123456789ABCDEF~x.y") == "-"
    assert presented_key_id("fpk_short") == "-"
    assert presented_key_id("anything") == "-"
    assert presented_key_id(None) == "-"
